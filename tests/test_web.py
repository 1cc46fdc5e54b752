"""The static site in headless Chromium: built from the session's repository with the npm
packages of the committed lock file; a drawn and an uploaded digit classified by every
in-browser variant; nothing fetched beyond the site's origin; and the browser rows of the
parity gate (every in-browser variant within its profile)."""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from pages import digit_file, draw_a_one, upload

import harness
from contract.formats import FORMATS
from contract.names import TRAINERS
from harness import browser
from serve import images
from web import site as web_site

NAMES = sorted(f"{t}.{name}" for t in TRAINERS for name, f in FORMATS.items() if f.browser)
ROWS = f"document.querySelectorAll('#results tbody tr').length === {len(NAMES)}"

pytestmark = [
    pytest.mark.slow,
    # `make test` installs Chromium and the npm packages where it can; CI never skips this.
    pytest.mark.skipif(
        not (browser.CHROMIUM.exists() and web_site.NODE_MODULES.is_dir())
        and not os.environ.get("CI"),
        reason="needs Debian's chromium and web/node_modules (make browser web-deps)",
    ),
]


@pytest.fixture(scope="module")
def opened(digits_site):
    with browser.open_site(digits_site[0]) as opened:
        yield opened
        assert not opened.errors, opened.errors


@pytest.fixture(scope="module")
def page(opened):
    return opened.page


def shown(page) -> dict[str, list[str]]:
    rows = page.locator("#results tbody tr")
    return {
        rows.nth(i).get_attribute("data-model"): rows.nth(i).locator("td").all_inner_texts()
        for i in range(rows.count())
    }


def check_against_python(page, repo) -> None:
    """Every variant's row shows the Python runtime's top-1 and probability (to the shown
    0.1%) on the 8x8 input the page fed, and a time per image."""
    seen = np.array(page.evaluate("tandem.lastInput"), np.float32).reshape(1, 8, 8, 1)
    table = shown(page)
    assert sorted(table) == NAMES
    for name, (_, runtime, label, probability, ms) in table.items():
        best = harness.load(repo / name).classify(seen, k=1)[0][0]
        assert runtime == FORMATS[name.split(".", 1)[1]].browser
        assert label == best["label"], (name, label, best)
        assert abs(float(probability.rstrip("%")) - 100 * best["probability"]) <= 0.15, name
        assert float(ms) > 0


def test_site_holds_the_page_the_runtime_files_and_the_models(digits_site):
    out, files = digits_site
    assert (out / "index.html").is_file()
    vendor = {f for f in files if f.startswith("vendor/")}
    assert vendor == set(web_site.VENDOR), "only the npm files the page loads"
    index = browser.read_index(out)
    assert sorted(e["name"] for e in index) == NAMES
    for entry in index:
        urls = entry.get("fixed_batch") or {"file": entry["file"]}
        assert all(url in files for url in urls.values()), entry["name"]
        if entry["runtime"] == "litert":  # LiteRT.js cannot resize: batch 1 and 64 files
            assert sorted(entry["fixed_batch"], key=int) == ["1", "64"]


def test_draw_a_digit(page, digits_repo):
    draw_a_one(page)
    page.click("#classify")
    page.wait_for_function(ROWS)
    check_against_python(page, digits_repo[1])
    assert page.locator("#seen").evaluate("c => [c.width, c.height]") == [8, 8]


def test_upload_is_seen_as_the_server_sees_it(page, digits_repo):
    """The page resizes an upload exactly as the server does (PIL's luma and bilinear)."""
    data = digit_file()
    page.evaluate(
        "tandem.lastInput = null; document.querySelector('#results tbody').replaceChildren()"
    )
    upload(page, data)
    page.wait_for_function(ROWS)
    seen = np.array(page.evaluate("tandem.lastInput"), np.float32).reshape(1, 8, 8, 1)
    np.testing.assert_array_equal(seen, images.decode(data, (8, 8, 1)))
    check_against_python(page, digits_repo[1])


def test_works_offline(opened, digits_site):
    """Every request leaving the site's origin is blocked, and the page still loads every
    variant and classifies: nothing it needs comes from elsewhere. None was even tried."""
    blocked, fetched = [], []
    origin = opened.url + "/"

    def route(r):
        if r.request.url.startswith(origin):
            fetched.append(r.request.url.removeprefix(origin))
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context = opened.page.context.browser.new_context()  # a fresh cache: every file fetched
    try:
        context.route("**/*", route)
        page = context.new_page()
        page.goto(origin)
        page.wait_for_function("!document.getElementById('classify').disabled", timeout=120_000)
        rows = page.evaluate("tandem.classify(document.getElementById('pad'))")
    finally:
        context.close()
    assert blocked == []
    assert len(rows) == len(NAMES)
    assert set(fetched) - {""} <= set(digits_site[1]), "every request is a file of the site"
    assert {"models.json", *(f for f in web_site.VENDOR if "compat" not in f)} <= set(fetched)


def test_works_without_the_isolation_headers(opened, digits_site):
    """Under a server that sends no COOP/COEP (`python -m http.server`), the runtimes fall
    back to one thread, the page says so, and every variant still classifies."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(digits_site[0]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = opened.page.context.browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function("!document.getElementById('classify').disabled", timeout=120_000)
        assert page.evaluate("self.crossOriginIsolated") is False
        assert "off (no COOP/COEP)" in page.locator("#status").inner_text()
        assert len(page.evaluate("tandem.classify(document.getElementById('pad'))")) == len(NAMES)
    finally:
        context.close()
        server.shutdown()
        server.server_close()
