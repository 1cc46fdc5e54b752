// An image as the model sees it: float32 [H, W, C], raw pixels 0..255, made the way the
// server makes it from an upload (contract/pixels.py: transparency composited onto white,
// PIL's convert("L" | "RGB"), then its bilinear resize), so the page and the server
// classify the same image. (A JPEG at least twice the model's side is decoded at a reduced
// scale by the server, libjpeg's DCT scaling, which the browser's decoder does not do: the
// two may then differ by a few levels.)

// PIL converts RGB to "L" with ITU-R 601-2 luma in 16-bit fixed point.
function luma(r, g, b) {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

// PIL's resampling weights for one axis (Resample.c, bilinear): a triangle filter widened
// by the scale when shrinking, normalised, in 22-bit fixed point for 8-bit images.
const PRECISION_BITS = 32 - 8 - 2;

function weights(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const taps = [];
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const first = Math.max(Math.trunc(center - support + 0.5), 0);
    const last = Math.min(Math.trunc(center + support + 0.5), inSize);
    const k = [];
    for (let x = first; x < last; x++) {
      k.push(Math.max(0, 1 - Math.abs((x - center + 0.5) / filterScale)));
    }
    const total = k.reduce((a, b) => a + b, 0);
    const fixed = k.map((w) => {
      const v = (total ? w / total : 0) * (1 << PRECISION_BITS);
      return v < 0 ? Math.trunc(v - 0.5) : Math.trunc(v + 0.5);
    });
    taps.push({ first, fixed });
  }
  return taps;
}

function clip8(acc) {
  const v = Math.floor(acc / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One pass along x (horizontal) or y (vertical) over a uint8 plane of `channels`.
function pass(plane, width, height, channels, outSize, horizontal) {
  const taps = weights(horizontal ? width : height, outSize);
  const outW = horizontal ? outSize : width;
  const outH = horizontal ? height : outSize;
  const out = new Uint8Array(outW * outH * channels);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const { first, fixed } = taps[horizontal ? x : y];
      for (let c = 0; c < channels; c++) {
        let acc = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < fixed.length; i++) {
          const sx = horizontal ? first + i : x;
          const sy = horizontal ? y : first + i;
          acc += plane[(sy * width + sx) * channels + c] * fixed[i];
        }
        out[(y * outW + x) * channels + c] = clip8(acc);
      }
    }
  }
  return out;
}

// RGBA bytes (a canvas's ImageData) -> Float32Array [size * size * channels], 0..255.
export function toModelInput(rgba, width, height, size, channels, invert) {
  const plane = new Uint8Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    // on white, as PIL's alpha_composite: c * a + 255 * (1 - a), rounded
    const a = rgba[4 * i + 3];
    const [r, g, b] = [0, 1, 2].map((k) => Math.round((rgba[4 * i + k] * a + 255 * (255 - a)) / 255));
    if (channels === 1) plane[i] = luma(r, g, b);
    else plane.set([r, g, b], 3 * i);
  }
  let resized = plane;
  if (width !== size) resized = pass(resized, width, height, channels, size, true);
  if (height !== size) resized = pass(resized, size, height, channels, size, false);
  return Float32Array.from(resized, (v) => (invert ? 255 - v : v));
}
