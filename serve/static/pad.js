// The drawing pad of both pages: the server's (serve/static/index.html) and the in-browser
// site's (web/src, whose build copies this file beside it). A canvas to draw a digit on in
// light ink on black, like the training data, with its buttons, an upload and the invert
// switch; the page decides what "Classify" and an upload do.
const MARKUP = `
  <canvas id="pad" width="256" height="256" aria-label="drawing pad"></canvas><br>
  <button id="classify">Classify drawing</button>
  <button id="clear">Clear</button><br>
  <label>Upload <input id="file" type="file" accept="image/png,image/jpeg,image/webp"></label><br>
  <label><input id="invert" type="checkbox"> dark ink on light paper (invert)</label>`;

// Fill `box` with the pad and its controls; returns them by id.
export function mountPad(box) {
  box.innerHTML = MARKUP;
  const find = (id) => box.querySelector(`#${id}`);
  const pad = find("pad");
  const ctx = pad.getContext("2d");
  let drawing = false;

  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  const point = (event) => {
    const at = pad.getBoundingClientRect();
    return [event.clientX - at.left, event.clientY - at.top];
  };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    Object.assign(ctx, { strokeStyle: "#fff", lineWidth: 22, lineCap: "round" });
    ctx.beginPath();
    ctx.moveTo(...point(e));
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...point(e));
    ctx.stroke();
  });
  window.addEventListener("pointerup", () => { drawing = false; });
  find("clear").addEventListener("click", clear);
  clear();
  return { pad, classify: find("classify"), file: find("file"), invert: find("invert") };
}
