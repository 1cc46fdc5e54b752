"""Parity rows of the in-browser runtimes: the built site (`make web`) runs each golden batch
in headless Chromium, and each result is judged like any other row, against the same eager
logits under the profile of the variant's format. Each row also records how far the browser
is from the same file run by its Python runtime (`host_max_abs_diff`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import harness
from contract.formats import FORMATS
from export import repository, versions
from harness import browser
from harness.verdict import FAIL, Row, judge


def base(name: str, path: Path, manifest: dict, reference: str) -> dict:
    fmt = FORMATS[manifest["format"]]
    return dict(
        name=browser.row_name(name, fmt.browser),
        trainer=manifest["trainer"],
        format=fmt.name,
        profile=fmt.precision,
        reference=reference,
        size_bytes=versions.deployed_size(path),
        runtime=f"browser-{fmt.browser}",
    )


def mismatch(name: str, manifest: dict, entries: dict, site: Path) -> str | None:
    """Why the site cannot stand for this variant (absent, or another export of it)."""
    if name not in entries:
        return f"not in the site {site}: run `make web`"
    for rel, digest in entries[name]["sha256"].items():
        if manifest["files"].get(rel) != digest:
            return f"the site {site} holds another export ({rel} differs): run `make web`"
    return None


def judged(site: browser.Site, name: str, path: Path, golden, reference, profile: str) -> dict:
    try:
        logits = site.logits(name, golden.images)
        result = judge(reference, logits, golden.labels, profile)
        host = harness.load(path).predict(golden.images)
        result["host_max_abs_diff"] = float(np.abs(logits - host).max())
        return result
    except Exception as e:  # a runtime error in the page is a failed row, not a crash
        return {"verdict": FAIL, "reason": f"{type(e).__name__}: {e}"}


def rows(site: Path, found: dict[str, Path], goldens: dict, references: dict) -> list[Row]:
    """One row per variant an in-browser runtime can run; raises if the page itself errs."""
    entries = {e["name"]: e for e in browser.read_index(site)}
    done, todo = [], []
    for name, path in found.items():
        manifest = repository.read_manifest(path)
        if not FORMATS[manifest["format"]].browser:
            continue
        fields = base(name, path, manifest, references[manifest["trainer"]][0])
        problem = mismatch(name, manifest, entries, site)
        if problem:
            done.append(Row(**fields, verdict=FAIL, reason=problem))
        else:
            todo.append((name, path, fields))
    if not todo:
        return done
    with browser.open_site(site) as page:
        for name, path, fields in todo:
            trainer = fields["trainer"]
            result = judged(
                page, name, path, goldens[trainer], references[trainer][1], fields["profile"]
            )
            done.append(Row(**fields, **result))
        if page.errors:
            raise RuntimeError(f"the page raised: {'; '.join(page.errors)}")
    return done
