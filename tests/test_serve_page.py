"""The web page in headless Chromium against a live server: draw a digit and upload one,
and see every variant's top-1 and probability, and whether they agree."""

from __future__ import annotations

import os

import pytest
from pages import digit_file, draw_a_one, upload
from serve_live import Live, subset

from harness.browser import CHROMIUM, FLAGS  # the one headless-Chromium recipe

NAMES = ["torch.onnx", "torch.tflite", "torch.tflite-int8"]

pytestmark = [
    pytest.mark.slow,
    # `make test` installs Chromium where it can (root + apt); CI must never skip this.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium: apt-get install chromium (make browser)",
    ),
]


@pytest.fixture(scope="module")
def live(serve_root, tmp_path_factory):
    root = serve_root
    tmp = tmp_path_factory.mktemp("page")
    server = Live(
        subset(root / "repo", tmp / "repo", NAMES),
        "--golden",
        str(root / "golden.npz"),
        log=tmp / "log",
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def page(live):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url + "/")
        yield page
        browser.close()
        assert not errors, errors


def table(page) -> dict[str, tuple[str, str]]:
    rows = page.locator("#results tbody tr")
    return {
        rows.nth(i).get_attribute("data-model"): (
            rows.nth(i).locator("td").nth(1).inner_text(),
            rows.nth(i).locator("td").nth(2).inner_text(),
        )
        for i in range(rows.count())
    }


def check_shown(page, answer: dict) -> None:
    shown = table(page)
    assert sorted(shown) == sorted(NAMES)
    for row in answer["results"]:
        top = row["top"][0]
        assert shown[row["model"]] == (top["label"], f"{100 * top['probability']:.1f}%")
    verdict = page.locator("#verdict").inner_text()
    if answer["agree"]:
        assert verdict == f"All {len(NAMES)} variants agree: {answer['top1']}"
    else:
        assert "disagree" in verdict


def test_draw_a_digit(page, tmp_path):
    draw_a_one(page)
    with page.expect_response("**/classify") as response:
        page.click("#classify")
    assert response.value.status == 200
    page.wait_for_selector("#results tbody tr")
    check_shown(page, response.value.json())
    page.screenshot(path=str(tmp_path / "drawn.png"))
    if os.environ.get("SERVE_SCREENSHOT"):
        page.screenshot(path=os.environ["SERVE_SCREENSHOT"])


def test_upload_a_digit(page):
    with page.expect_response("**/classify") as response:
        upload(page, digit_file())
    answer = response.value.json()
    assert response.value.status == 200 and len(answer["results"]) == len(NAMES)
    page.wait_for_function(
        "expected => [...document.querySelectorAll('#results tbody tr td:nth-child(3)')]"
        ".map(td => td.textContent).join() === expected",
        arg=",".join(f"{100 * r['top'][0]['probability']:.1f}%" for r in answer["results"]),
    )
    check_shown(page, answer)


def test_bad_upload_shows_the_error(page):
    with page.expect_response("**/classify") as response:
        upload(page, b"not an image", "x.txt", "text/plain")
    assert response.value.status == 415
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "not a PNG, JPEG or WEBP" in page.locator("#error").inner_text()
