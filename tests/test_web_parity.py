"""The parity gate's browser rows: the site built from the session's repository runs the
golden batch in headless Chromium, every in-browser variant within its profile; a site
built from another export cannot stand for a variant."""

from __future__ import annotations

import json

from test_web import NAMES, pytestmark  # noqa: F401 (same skip rule)

from contract.formats import FORMATS
from harness import browser, browser_parity, parity
from harness.verdict import PASS, PROFILES


def test_browser_parity_rows(digits_repo, digits_site, tmp_path):
    checkpoints, repo = digits_repo
    args = ["--repository", str(repo), "--checkpoints", str(checkpoints), "--browser"]
    assert parity.main([*args, "--site", str(digits_site[0]), "--reports", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "parity.json").read_text())
    rows = {v["name"]: v for v in result["variants"] if v["runtime"]}
    expected = {browser.row_name(n, FORMATS[n.split(".", 1)[1]].browser) for n in NAMES}
    assert set(rows) == expected
    for name, v in rows.items():
        assert v["verdict"] == PASS, (name, v["reason"])
        if v["profile"] == "fp32":
            assert v["max_abs_diff"] <= PROFILES["fp32"].max_abs_diff, name
        if v["runtime"] == "browser-litert" and v["profile"] != "int8":
            assert v["host_max_abs_diff"] == 0.0, (name, "LiteRT.js runs the file as Python does")
    table = (tmp_path / "parity.md").read_text()
    assert "torch.tflite@browser-litert" in table and "@browser-onnxruntime-web" in table


def test_a_stale_site_is_a_failed_row(digits_repo, digits_site):
    """A site built from another export of a variant cannot stand for it."""
    _, repo = digits_repo
    site = digits_site[0]
    manifest = json.loads((repo / "torch.onnx" / "manifest.json").read_text())
    entries = {e["name"]: e for e in browser.read_index(site)}
    assert browser_parity.mismatch("torch.onnx", manifest, entries, site) is None
    entries["torch.onnx"]["sha256"]["1/model.onnx"] = "0" * 64
    assert "another export" in browser_parity.mismatch("torch.onnx", manifest, entries, site)
    assert "not in the site" in browser_parity.mismatch("torch.pt2", manifest, {}, site)
