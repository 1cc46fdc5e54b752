"""One test per row of the parity gate's report; run by users' CI, never by this project's
suite (harness/pytest_parity.py says how):

    pytest --pyargs harness.test_parity_gate --parity-repository artifacts/model_repository
"""

from __future__ import annotations

import pytest

from harness import junit
from harness.verdict import FAIL, INCONCLUSIVE


def test_parity(parity_row: dict, pytestconfig: pytest.Config) -> None:
    line = junit.figures(parity_row)
    print(line)  # the figures, in the JUnit file's <system-out> with -o junit_logging=system-out
    reason = f"{parity_row['reason']} ({line})"
    if parity_row["verdict"] == FAIL:
        pytest.fail(reason, pytrace=False)
    if parity_row["verdict"] == INCONCLUSIVE:
        if pytestconfig.getoption("parity_strict"):
            pytest.fail(f"inconclusive (--parity-strict): {reason}", pytrace=False)
        pytest.skip(reason)
