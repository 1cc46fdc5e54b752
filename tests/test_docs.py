"""The docs: every measured figure in README.md and docs/ equals what `python -m docs.figures`
writes from its committed snapshot, and the site builds with `mkdocs build --strict`, which
fails on a broken link or anchor, in the pages and in the README alike."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import capacity as capacity_plan
from docs import figures
from docs.figures import refresh, tables

ROOT = figures.ROOT


def copy_tree(dest: Path) -> Path:
    """The pages, the site's config, the snapshots and the files the capacity plan writes."""
    dest.mkdir(exist_ok=True)
    shutil.copy(ROOT / "README.md", dest / "README.md")
    shutil.copy(ROOT / "mkdocs.yml", dest / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", dest / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "deploy").mkdir()
    for path in [capacity_plan.SNAPSHOT, *capacity_plan.SIZED_BY]:
        shutil.copy(path, dest / "deploy" / path.name)
    return dest


def test_the_figures_equal_their_snapshots():
    assert figures.check() == [], "run `make figures`"


def test_a_figure_edited_by_hand_fails_the_check(tmp_path):
    root = copy_tree(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    start, end = text.index("<!-- figures:demo -->"), text.index("<!-- /figures:demo -->")
    block = text[start:end]
    edited = re.sub(r"\d\.\d+e-0\d", "1.0e-06", block, count=1)  # one cell of the table
    assert edited != block
    readme.write_text(text[:start] + edited + text[end:])
    (problem,) = figures.check(root)
    line = text.count("\n", 0, start) + 1
    assert problem.startswith(f"README.md:{line}: figures:demo differs at its line ")
    assert "'1.0e-06'" not in problem and "1.0e-06" in problem
    assert figures.write(root) == [readme]  # the script puts the snapshot's figures back
    assert readme.read_text() == text and figures.check(root) == []


def test_a_block_that_no_page_holds_or_no_snapshot_knows_fails(tmp_path):
    root = copy_tree(tmp_path)
    page = root / "docs" / "lockstep.md"
    text = page.read_text()
    page.write_text(re.sub(r"<!-- (/?)figures:lockstep -->", r"<!-- \1lockstep -->", text))
    assert figures.check(root) == ["figures:lockstep is on no page"]
    page.write_text(text.replace("figures:lockstep", "figures:lockstep-by-hand"))
    with pytest.raises(ValueError, match=r"docs/lockstep.md: unknown figures block"):
        figures.check(root)


def test_a_snapshot_without_a_blocks_section_names_the_run_to_make(tmp_path):
    root = copy_tree(tmp_path)
    path = figures.snapshot_path("bench", root)
    snap = json.loads(path.read_text())
    del snap["data"]  # a quick `make bench` measures no data path
    path.write_text(json.dumps(snap))
    with pytest.raises(ValueError, match=r"figures:bench-data: .*bench.json has no 'data': run"):
        figures.check(root)


def test_bench_snapshots_of_two_runs_fail(tmp_path):
    root = copy_tree(tmp_path)
    plan = root / tables.CAPACITY_FILE
    snap = json.loads(plan.read_text())
    snap["machine"]["load_average"] = [9.0, 9.0, 9.0]  # another run of `make bench`
    plan.write_text(json.dumps(snap))
    (problem,) = figures.check(root)
    assert "come from different runs of `make bench`" in problem


def committed_reports(reports: Path) -> None:
    """The reports the committed snapshots were taken from (the bench's server section
    back from where the capacity plan keeps it)."""
    reports.mkdir()
    for name in ("parity", "lockstep", "serve_bench", "browser_bench", "photos", "bug_example"):
        snap = json.loads(figures.snapshot_path(name).read_text())
        snap.pop("provenance")
        (reports / f"{name}.json").write_text(json.dumps(snap))
    bench = json.loads(figures.snapshot_path("bench").read_text())
    bench.pop("provenance")
    bench["server"] = json.loads(capacity_plan.SNAPSHOT.read_text())["server"]
    (reports / "bench.json").write_text(json.dumps(bench))


def test_refresh_takes_a_run_into_the_snapshots(tmp_path):
    root = copy_tree(tmp_path / "root")
    out = root / figures.HERE
    for snap in out.glob("*.json"):
        snap.unlink()
    (out / "train.json").write_text(figures.snapshot_path("train").read_text())
    committed_reports(tmp_path / "reports")
    said = refresh.take(root, tmp_path / "reports", tmp_path / "no-checkpoints", out)
    assert len(said) == 8, said  # seven snapshots and the capacity plan's
    names = ("parity", "lockstep", "bench", "serve_bench", "browser_bench", "photos", "bug_example")
    for name in names:
        taken = json.loads((out / f"{name}.json").read_text())
        committed = json.loads(figures.snapshot_path(name).read_text())
        assert taken.pop("provenance")["commands"] == committed.pop("provenance")["commands"]
        assert taken == committed, name
    plan = json.loads((root / tables.CAPACITY_FILE).read_text())
    assert plan["server"] == json.loads(capacity_plan.SNAPSHOT.read_text())["server"]
    figures.write(root)
    assert figures.check(root) == []


def test_refresh_refuses_a_quick_bench(tmp_path):
    root = copy_tree(tmp_path / "root")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "bench.json").write_text(json.dumps({"quick": True}))
    said = refresh.take(root, reports, tmp_path, root / figures.HERE)
    assert said == [
        f"not taken: {reports / 'bench.json'} is a --quick run (its figures are for CI only)"
    ]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=120)


def test_the_site_builds_strict_and_offline(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="parity/' in index  # the README's docs/ links, relative to the site
    # A page loads nothing from elsewhere: no web fonts, scripts or style sheets.
    remote = re.compile(r'<(?:script|img)[^>]* src="(?:https?:)?//|<link[^>]* href="(?:https?:)?//')
    for page in (tmp_path / "site").rglob("*.html"):
        assert not remote.search(page.read_text()), page


BREAKS = {
    "a page's link": ("docs/training.md", "(lockstep.md)", "(lockstepp.md)", "'lockstepp.md'"),
    "the README's link": ("README.md", "(docs/export.md)", "(docs/exports.md)", "'exports.md'"),
    "an anchor": ("README.md", "#the-one-cnn)", "#the-one-cn)", "'#the-one-cn'"),
}


@pytest.mark.parametrize("broken", BREAKS)
def test_a_broken_link_fails_the_build(tmp_path, broken):
    page, good, bad, named = BREAKS[broken]
    root = copy_tree(tmp_path / "root")
    text = (root / page).read_text()
    assert good in text
    (root / page).write_text(text.replace(good, bad, 1))
    done = build(root, tmp_path / "site")
    assert done.returncode != 0
    assert named in done.stderr, done.stderr
