"""The in-browser runtimes, driven from Python: the static site (`make web`) served on
loopback with the headers its threads need, open in headless Chromium through Playwright.

    with browser.open_site(Path("artifacts/web")) as site:
        logits = site.logits("torch.tflite", images)   # float32 [N, K], computed in the page
        site.timing("torch.onnx", batch=64)             # ms per image, median

The page's `window.tandem` (web/src/app.js) does the work; this module moves exact float32
bytes in and out (base64). Chromium is Debian's (`make browser`), never a downloaded one.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SITE_INDEX = "models.json"  # written by `make web`: every variant the page loads
# Threads in wasm need SharedArrayBuffer, which a browser grants only to a cross-origin
# isolated page: these two headers on every response.
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}
LOAD_TIMEOUT_MS = 120_000  # 15 variants and ~25 MB of wasm, on a busy 2-core machine


def row_name(variant: str, runtime: str) -> str:
    """A parity row of an in-browser runtime (a format record's `browser`)."""
    return f"{variant}@browser-{runtime}"


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 (the base class's own attribute, replaced)
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def end_headers(self) -> None:
        for key, value in ISOLATION.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # quiet: the tests read no log
        pass


@contextmanager
def serve(root: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `root` over HTTP with the isolation headers; yields its URL."""
    if not (Path(root) / "index.html").is_file():
        raise FileNotFoundError(f"{root} holds no index.html: run `make web` first")
    handler = functools.partial(Handler, directory=str(root))
    server = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def read_index(root: Path) -> list[dict]:
    path = Path(root) / SITE_INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make web` first")
    return json.loads(path.read_text())["models"]


@dataclass
class Site:
    """The site open in a page; `errors` collects uncaught page errors."""

    page: object
    url: str
    errors: list[str] = field(default_factory=list)

    def logits(self, name: str, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        encoded = base64.b64encode(images.tobytes()).decode()
        answer = self.page.evaluate(
            "([name, images, n]) => tandem.logitsBase64(name, images, n)",
            [name, encoded, len(images)],
        )
        return np.frombuffer(base64.b64decode(answer), np.float32).reshape(len(images), -1)

    def timing(self, name: str, batch: int, repeats: int = 20) -> float:
        """Median milliseconds per image at `batch` images per call."""
        return self.page.evaluate(
            "([name, batch, repeats]) => tandem.timing(name, batch, repeats)",
            [name, batch, repeats],
        )


@contextmanager
def open_site(root: Path, chromium: Path = CHROMIUM) -> Iterator[Site]:
    """The built site in headless Chromium, every variant loaded."""
    from playwright.sync_api import sync_playwright

    if not Path(chromium).exists():
        raise FileNotFoundError(f"no {chromium}: install Debian's chromium (`make browser`)")
    with serve(root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=FLAGS)
        try:
            page = browser.new_page()
            site = Site(page, url)
            page.on("pageerror", lambda e: site.errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("window.tandem !== undefined")
            page.wait_for_function(
                "document.getElementById('classify').disabled === false "
                "|| document.getElementById('error').textContent !== ''",
                timeout=LOAD_TIMEOUT_MS,
            )
            error = page.locator("#error").inner_text()
            if error:
                raise RuntimeError(f"the site did not load: {error}")
            yield site
        finally:
            browser.close()
