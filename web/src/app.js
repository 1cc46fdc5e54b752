// The page: load every variant listed in models.json into its runtime, then classify a
// drawn or uploaded image with all of them, showing each one's top-1, probability and time
// per image, and the image the models see. `window.tandem` is the same machinery for the
// browser parity check and the benchmark (harness/browser.py).
import { ENGINES } from "./engines.js";
import { mountPad } from "./pad.js";
import { toModelInput } from "./pixels.js";

const $ = (id) => document.getElementById(id);
// The pad first (serve/static/pad.js); "Classify" waits until every variant has loaded.
const controls = mountPad($("pad-box"));
controls.classify.disabled = true;
const engines = new Map();
let queue = Promise.resolve(); // one runtime call at a time: a session is not re-entrant

function serial(task) {
  const result = queue.then(task);
  queue = result.catch(() => {});
  return result;
}

async function logits(name, images, n) {
  const engine = engines.get(name);
  if (!engine) throw new Error(`no variant ${name} on this page`);
  return serial(() => engine.run(images, n));
}

// Median milliseconds per image over `repeats` calls at `batch` images (after one warm-up).
async function timing(name, batch, repeats) {
  const { input } = engines.get(name).entry;
  const images = new Float32Array(batch * input.slice(1).reduce((a, b) => a * b, 1));
  for (let i = 0; i < images.length; i++) images[i] = (i * 37) % 256;
  await logits(name, images, batch);
  const times = [];
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    await logits(name, images, batch);
    times.push((performance.now() - start) / batch);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

// base64 <-> float32, so the test moves exact bytes rather than JSON numbers.
function fromBase64(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

function toBase64(floats) {
  const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

async function load() {
  const { models } = await (await fetch("models.json")).json();
  for (const entry of models) {
    $("status").textContent = `loading ${entry.name} (${entry.runtime})...`;
    engines.set(entry.name, await ENGINES[entry.runtime].load(entry));
  }
  $("status").textContent = `${models.length} variants loaded, running in this browser: ` +
    `nothing leaves the page. Threads: ${self.crossOriginIsolated ? "on" : "off (no COOP/COEP)"}.`;
  $("classify").disabled = false;
  return models;
}

function softmax(row) {
  const top = Math.max(...row);
  const e = row.map((v) => Math.exp(v - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

function preview(input, entry) {
  const [, h, w, c] = entry.input;
  const canvas = $("seen");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const px = c === 1 ? [input[i], input[i], input[i]] : input.subarray(3 * i, 3 * i + 3);
    image.data.set([...px, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  tr.appendChild(td);
}

async function classify(source) {
  $("error").textContent = "";
  const { width, height } = source;
  const scratch = new OffscreenCanvas(width, height).getContext("2d");
  scratch.drawImage(source, 0, 0);
  const rgba = scratch.getImageData(0, 0, width, height).data;
  const invert = controls.invert.checked;
  const body = document.querySelector("#results tbody");
  const rows = [];
  for (const [name, engine] of engines) {
    const [, size, , channels] = engine.entry.input;
    const input = toModelInput(rgba, width, height, size, channels, invert);
    if (!rows.length) {
      preview(input, engine.entry);
      window.tandem.lastInput = Array.from(input);
    }
    const start = performance.now();
    const probs = softmax(Array.from(await logits(name, input, 1)));
    const ms = performance.now() - start;
    const best = probs.indexOf(Math.max(...probs));
    rows.push({ name, engine, label: engine.entry.labels[best], p: probs[best], ms });
  }
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.model = r.name;
    cell(tr, r.name);
    cell(tr, r.engine.entry.runtime);
    cell(tr, r.label);
    cell(tr, (100 * r.p).toFixed(1) + "%", "p");
    cell(tr, r.ms.toFixed(2), "p");
    body.appendChild(tr);
  }
  $("results").hidden = false;
  const labels = new Set(rows.map((r) => r.label));
  $("verdict").className = labels.size === 1 ? "agree" : "disagree";
  $("verdict").textContent = labels.size === 1
    ? `All ${rows.length} variants agree: ${rows[0].label}`
    : `The ${rows.length} variants disagree`;
  return rows.map(({ name, label, p, ms }) => ({ name, label, probability: p, ms }));
}

window.tandem = {
  engines,
  logits,
  timing,
  classify,
  lastInput: null,
  async logitsBase64(name, images, n) {
    return toBase64(await logits(name, fromBase64(images), n));
  },
};
window.tandem.ready = load().catch((e) => {
  $("error").textContent = `loading failed: ${e.message}`;
  throw e;
});

controls.classify.addEventListener("click", () => classify(controls.pad));
controls.file.addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  try {
    // Raw pixels, as PIL reads them: no colour management, no premultiplied alpha.
    const options = { colorSpaceConversion: "none", premultiplyAlpha: "none" };
    await classify(await createImageBitmap(file, options));
  } catch (err) {
    $("error").textContent = `cannot read ${file.name}: ${err.message}`;
  }
});
