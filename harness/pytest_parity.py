"""The parity gate as pytest tests, one per variant, for a CI that already runs pytest.

    pytest --pyargs harness.test_parity_gate --parity-repository artifacts/model_repository \
        --parity-checkpoints artifacts/checkpoints --junit-xml parity.xml

A pytest plugin (registered under `pytest11` in pyproject.toml): it adds the --parity-*
options and gives harness/test_parity_gate.py one case per row of the gate's report. A
fail fails its test, an inconclusive row skips with the reason (fails with --parity-strict).
Without --parity-repository the test is skipped: nothing runs in a suite not pointed at
a repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.paths import CHECKPOINTS, REPORTS

ROWS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "tandem's parity gate (harness.test_parity_gate)")
    group.addoption("--parity-repository", type=Path, help="the model repository to check")
    group.addoption(
        "--parity-checkpoints", type=Path, default=CHECKPOINTS, help="the checkpoint root"
    )
    group.addoption(
        "--parity-reports", type=Path, default=REPORTS, help="where the gate's report goes"
    )
    group.addoption("--parity-replay", action="store_true", help="reuse the reports' golden.npz")
    group.addoption(
        "--parity-strict", action="store_true", help="an inconclusive row fails its test"
    )


def rows(config: pytest.Config) -> list[dict]:
    """The gate's rows, run once per session (at collection: the ids are the row names)."""
    if ROWS not in config.stash:
        # Here, not at the top: pytest loads this plugin in every session of this
        # environment, and only a run asking for the gate needs the gate's imports.
        from contract.checkpoint import CheckpointError
        from harness import parity

        option = config.getoption
        try:
            result = parity.run(
                option("parity_repository"),
                option("parity_checkpoints"),
                option("parity_reports"),
                option("parity_replay"),
            )
        except (CheckpointError, SystemExit) as e:  # no checkpoint, or no variant: say which
            raise pytest.UsageError(f"--parity-repository: {e}") from e
        config.stash[ROWS] = result["variants"]
    return config.stash[ROWS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "parity_row" not in metafunc.fixturenames:
        return
    if metafunc.config.getoption("parity_repository") is None:
        skip = pytest.mark.skip(reason="no --parity-repository: point it at a model repository")
        metafunc.parametrize("parity_row", [pytest.param(None, marks=skip)], ids=["none"])
        return
    found = rows(metafunc.config)
    metafunc.parametrize("parity_row", found, ids=[row["name"] for row in found])
