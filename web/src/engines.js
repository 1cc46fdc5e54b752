// The two in-browser runtimes behind one interface: `await Engine.load(entry)`, then
// `await engine.run(images, n)` -> Float32Array logits [n * classes], under the same I/O
// contract as every other runtime: images float32 [n, H, W, C], raw pixels 0..255.
import * as ort from "./vendor/onnxruntime-web/ort.wasm.bundle.min.mjs";
import { loadLiteRt, loadAndCompile, Tensor } from "@litertjs/core";

// Threads need a cross-origin isolated page (COOP/COEP headers); without them ORT runs one.
if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;

let liteRtLoaded = null;

function shape(entry, n) {
  return [n, ...entry.input.slice(1)];
}

class OrtEngine {
  static async load(entry) {
    const session = await ort.InferenceSession.create(entry.file, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    return new OrtEngine(entry, session);
  }

  constructor(entry, session) {
    this.entry = entry;
    this.session = session;
  }

  async run(images, n) {
    const input = new ort.Tensor("float32", images, shape(this.entry, n));
    const outputs = await this.session.run({ [this.session.inputNames[0]]: input });
    return outputs[this.session.outputNames[0]].data;
  }
}

// LiteRT.js cannot resize an input, so a variant comes as one file per fixed batch size
// (entry.fixed_batch: {"1": url, "64": url}); a larger batch runs in chunks of the largest,
// the last one padded with zeros (rows are independent: the padding never reaches them).
class LiteRtEngine {
  static async load(entry) {
    liteRtLoaded ??= loadLiteRt(new URL("./vendor/litertjs/wasm/", import.meta.url).href);
    await liteRtLoaded;
    const models = new Map();
    for (const [batch, url] of Object.entries(entry.fixed_batch)) {
      models.set(Number(batch), await loadAndCompile(url, { accelerator: "wasm" }));
    }
    return new LiteRtEngine(entry, models);
  }

  constructor(entry, models) {
    this.entry = entry;
    this.models = models;
    this.pixels = entry.input.slice(1).reduce((a, b) => a * b, 1);
    this.classes = entry.labels.length;
  }

  async run(images, n) {
    if (this.models.has(n)) return this.runFixed(n, images);
    const chunk = Math.max(...this.models.keys());
    const logits = new Float32Array(n * this.classes);
    for (let start = 0; start < n; start += chunk) {
      const rows = Math.min(chunk, n - start);
      const padded = new Float32Array(chunk * this.pixels);
      padded.set(images.subarray(start * this.pixels, (start + rows) * this.pixels));
      const out = await this.runFixed(chunk, padded);
      logits.set(out.subarray(0, rows * this.classes), start * this.classes);
    }
    return logits;
  }

  async runFixed(batch, images) {
    const input = new Tensor(images, shape(this.entry, batch));
    try {
      const outputs = await this.models.get(batch).run(input);
      try {
        return new Float32Array(outputs[0].toTypedArray());
      } finally {
        for (const t of outputs) t.delete();
      }
    } finally {
      input.delete();
    }
  }
}

export const ENGINES = { "onnxruntime-web": OrtEngine, litert: LiteRtEngine };
