"""Build the static site: the page (web/src, and the drawing pad it shares with the server's
page, serve/static/pad.js), the runtime files it loads from the npm packages
(web/node_modules, installed by `npm ci` from the committed lock file), and every variant an
in-browser runtime can run, copied from the model repository.

artifacts/web/index.html, app.js, engines.js, pixels.js, pad.js
artifacts/web/models.json                      # the variants the page loads
artifacts/web/models/<variant>/<file>          # model.onnx | model.b1.tflite, model.b64.tflite
artifacts/web/vendor/...                       # VENDOR: nothing else from node_modules

Built in a hidden sibling folder and renamed into place, like a variant.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from contract.formats import FORMATS
from export import repository
from harness.browser import SITE_INDEX

WEB = Path(__file__).resolve().parent
SOURCE = WEB / "src"
# {file of the page: its one source}. The pad is the server page's too; the server serves it
# from its own package (the serving image holds no web/).
PAGE_SOURCES = {
    **{name: SOURCE / name for name in ("index.html", "app.js", "engines.js", "pixels.js")},
    "pad.js": WEB.parent / "serve" / "static" / "pad.js",
}
NODE_MODULES = WEB / "node_modules"
# {path in the site: path under node_modules}: the only npm files the page fetches. ORT's
# wasm bundle embeds its loader; LiteRT.js picks the relaxed-SIMD build where the browser
# has relaxed SIMD (Chromium), else the compat one, so both are shipped.
VENDOR = {
    **{
        f"vendor/onnxruntime-web/{name}": f"onnxruntime-web/dist/{name}"
        for name in ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
    },
    "vendor/litertjs/core.js": "@litertjs/core/dist/index.js",
    "vendor/litertjs/wasm-utils.js": "@litertjs/wasm-utils/dist/index.js",
    **{
        f"vendor/litertjs/wasm/{name}": f"@litertjs/core/wasm/{name}"
        for stem in ("litert_wasm_internal", "litert_wasm_compat_internal")
        for name in (f"{stem}.js", f"{stem}.wasm")
    },
}
PAGE_FILES = (*PAGE_SOURCES, SITE_INDEX)  # the page a visitor loads, before runtimes and models


class SiteError(RuntimeError):
    """The site cannot be built; the message says what to run."""


def browser_runtime(fmt: str) -> str:
    """The in-browser runtime of a format ("" for none, or for a format unknown here)."""
    return FORMATS[fmt].browser if fmt in FORMATS else ""


def entry(folder: Path, manifest: dict, dest: Path) -> dict:
    """Copy one variant's browser files into `dest`; its models.json entry."""
    fmt = manifest["format"]
    runtime = browser_runtime(fmt)
    if runtime == "litert" and "fixed_batch" not in manifest:
        raise SiteError(f"{folder} has no fixed-batch files for LiteRT.js: re-run `make export`")
    files = manifest.get("fixed_batch") or {"file": manifest["artifact"]}
    dest.mkdir(parents=True)
    urls = {}
    for key, rel in files.items():
        shutil.copy2(folder / rel, dest / Path(rel).name)
        urls[key] = f"models/{folder.name}/{Path(rel).name}"
    return {
        "name": folder.name,
        "trainer": manifest["trainer"],
        "format": fmt,
        "precision": manifest["precision"],
        "runtime": runtime,
        "input": manifest["input"]["shape"],
        "labels": manifest["labels"],
        **({"fixed_batch": urls} if runtime == "litert" else {"file": urls["file"]}),
        # What the parity gate checks the site against: the same export as the repository.
        "sha256": {rel: manifest["files"][rel] for rel in files.values()},
    }


def build(repository_dir: Path, out: Path, node_modules: Path = NODE_MODULES) -> dict:
    """Write the site to `out`; returns {path in the site: bytes} for every file."""
    missing = [rel for rel in VENDOR.values() if not (node_modules / rel).is_file()]
    if missing:
        raise SiteError(f"{node_modules / missing[0]} is missing: run `make web` (npm ci in web/)")
    found = {
        name: (path, repository.verify(path))
        for name, path in repository.variants(repository_dir).items()
    }
    found = {n: v for n, v in found.items() if browser_runtime(v[1]["format"])}
    if not found:
        raise SiteError(f"no ONNX or TFLite variant in {repository_dir}: run `make export`")
    out = Path(out)
    staged = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    try:
        for name, source in PAGE_SOURCES.items():
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staged / name)
        for site_path, rel in VENDOR.items():
            (staged / site_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(node_modules / rel, staged / site_path)
        models = [entry(path, m, staged / "models" / name) for name, (path, m) in found.items()]
        (staged / SITE_INDEX).write_text(json.dumps({"models": models}, indent=1) + "\n")
        repository.publish(staged, out.parent, out.name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {p.relative_to(out).as_posix(): p.stat().st_size for p in files}
