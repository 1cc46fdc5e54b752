"""The import graph of the project's packages, read from the source (tests/imports.py: ast,
nothing imported, a fraction of a second): no circle between first-party modules, each stage
importing only the stages before it (DESIGN.md), `harness` and `serve` nothing from `train`,
and the bottom package, `contract`, no stage.

Imports inside functions count like module-level ones: a first-party import moved into a
function still closes a circle, it only hides it until the function runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from imports import circles, graph, packages

ROOT = Path(__file__).resolve().parents[1]
# Each stage ranks after the ones it may import; equal ranks are siblings and import neither.
RANK = {
    "contract": 0,
    "train": 1,
    "export": 2,
    "harness": 3,
    "serve": 4,
    "web": 4,
    "benchmarks": 5,
    "deploy": 6,
}
NEVER = {("harness", "train"), ("serve", "train")}  # the serving image holds no train/


def upward(edges: dict[str, dict[str, int]], rank: dict[str, int]) -> list[str]:
    """Imports of a later stage or a sibling, and those NEVER allows, as `module:line`."""
    bad = []
    for module, imported in sorted(edges.items()):
        stage = module.split(".")[0]
        for target, line in sorted(imported.items()):
            other = target.split(".")[0]
            if other != stage and ((stage, other) in NEVER or rank[other] >= rank[stage]):
                bad.append(f"{module}:{line} imports {target}")
    return bad


@pytest.fixture(scope="module")
def edges() -> dict[str, dict[str, int]]:
    return graph(ROOT)


def test_no_import_circle(edges):
    found = circles(edges)
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_each_stage_imports_only_the_stages_before_it(edges):
    assert packages(ROOT) == set(RANK), "a package without a stage: give it a RANK"
    assert upward(edges, RANK) == []


def test_harness_and_serve_import_nothing_from_train(edges):
    reached = [
        f"{module} imports {target}"
        for module, imported in sorted(edges.items())
        for target in imported
        if module.split(".")[0] in ("harness", "serve") and target.split(".")[0] == "train"
    ]
    assert reached == []


def test_the_contract_imports_no_stage(edges):
    below = {t for m, imported in edges.items() if m.split(".")[0] == "contract" for t in imported}
    assert {t.split(".")[0] for t in below} <= {"contract"}, sorted(below)


@pytest.mark.parametrize("stage", sorted(RANK))
def test_every_stage_is_walked(edges, stage):
    assert any(m.split(".")[0] == stage and imported for m, imported in edges.items()), stage


# The walk proves nothing if it cannot fail: made-up trees, each with one fault in it.
def tree(root: Path, files: dict[str, str]) -> dict[str, dict[str, int]]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return graph(root)


def test_a_circle_hidden_in_a_function_is_found(tmp_path):
    edges = tree(
        tmp_path,
        {
            "export/__init__.py": "",
            "export/source.py": "def build():\n    from export import tf_formats\n",
            "export/tf_formats.py": "from export.source import build\n",
            "export/other.py": "import export.source\n",
        },
    )
    assert circles(edges) == [["export.source", "export.tf_formats", "export.source"]]


def test_a_circle_through_a_package_init_is_found(tmp_path):
    edges = tree(
        tmp_path,
        {
            "harness/__init__.py": "from harness.backend import load\n",
            "harness/backend.py": "from harness.runners import RUNNERS\n",
            "harness/runners.py": "from harness import load\n",
        },
    )
    assert circles(edges) == [["harness", "harness.backend", "harness.runners", "harness"]]


def test_a_package_importing_its_own_submodules_is_no_circle(tmp_path):
    edges = tree(
        tmp_path,
        {
            "harness/__init__.py": "from harness.backend import load\n",
            "harness/backend.py": "from harness import runners\nimport harness.runners\n",
            "harness/runners.py": "",
        },
    )
    assert edges["harness.backend"] == {"harness.runners": 1}
    assert circles(edges) == []


def test_an_upward_import_is_found(tmp_path):
    edges = tree(
        tmp_path,
        {
            "contract/__init__.py": "",
            "contract/names.py": "def late():\n    from serve import app\n",
            "train/__init__.py": "",
            "train/config.py": "from contract import names\n",
            "serve/__init__.py": "",
            "serve/app.py": "from train.config import x\n",
        },
    )
    assert upward(edges, RANK) == [
        "contract.names:2 imports serve",
        "contract.names:2 imports serve.app",
        "serve.app:1 imports train",
        "serve.app:1 imports train.config",
    ]
