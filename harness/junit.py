"""The parity report as JUnit XML, the format CI dashboards read (GitHub Actions' test
reporters, GitLab's `artifacts:reports:junit`, Jenkins' `junit` step).

One <testcase> per row of the report: classname `parity.<profile>`, name the variant.
A fail is a <failure>, an inconclusive row a <skipped>, each with the verdict's reason as
its message. The row's figures go in <system-out>, which every one of those tools shows
per case: the JUnit schema they follow (Jenkins xUnit's junit-10.xsd, pytest's xunit2)
allows <properties> on a <testsuite> only, not on a <testcase>.
"""

from __future__ import annotations

import math
import re
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from contract.files import atomic_path
from harness.verdict import FAIL, INCONCLUSIVE, VERDICTS

SUITE = "parity"
# The figures a case carries, in this order (harness/verdict.py's Row names them).
FIGURES = (
    "profile",
    "reference",
    "max_abs_diff",
    "top1_agreement",
    "accuracy_delta",
    "labelled_images",
    "decisive_flips",
    "near_tie_flips",
    "oracle_max_abs_diff",
    "verdict",
)
# XML 1.0 cannot carry these, and an exception's message may hold them.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def figure(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def figures(row: dict) -> str:
    """`profile=fp32 max_abs_diff=7.6e-06 ...`: one line, the same in every case."""
    return " ".join(f"{key}={figure(row.get(key))}" for key in FIGURES)


def clean(text: str) -> str:
    return NOT_XML.sub("?", text)


def testcase(row: dict, strict: bool = False) -> ET.Element:
    """strict: an inconclusive row is a <failure>, as it fails `--strict`'s gate."""
    case = ET.Element("testcase", classname=f"{SUITE}.{row['profile']}", name=row["name"])
    line = figures(row)
    verdict, reason = row["verdict"], clean(row["reason"])
    if row.get("diagnosis"):  # where it leaves its eager model (harness/diagnose.py)
        reason = f"{reason}; {clean(row['diagnosis'])}"
    if verdict == FAIL or (strict and verdict == INCONCLUSIVE):
        message = reason if verdict == FAIL else f"inconclusive: {reason}"
        ET.SubElement(case, "failure", message=message, type=verdict).text = line
    elif verdict == INCONCLUSIVE:
        ET.SubElement(case, "skipped", message=reason, type=verdict)
    ET.SubElement(case, "system-out").text = line
    return case


def document(
    result: dict, strict: bool = False, timestamp: datetime | None = None
) -> ET.ElementTree:
    """<testsuites> holding one <testsuite name="parity"> with a case per report row."""
    rows = result["variants"]
    tally = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    unsure = tally[INCONCLUSIVE]
    counts = {
        "tests": str(len(rows)),
        "failures": str(tally[FAIL] + (unsure if strict else 0)),
        "errors": "0",  # a variant that cannot load is a fail row, with its reason
        "skipped": str(0 if strict else unsure),
    }
    root = ET.Element("testsuites", name=SUITE, **{k: counts[k] for k in counts if k != "skipped"})
    when = (timestamp or datetime.now(UTC)).isoformat(timespec="seconds")
    suite = ET.SubElement(
        root, "testsuite", name=SUITE, timestamp=when, hostname=socket.gethostname(), **counts
    )
    properties = ET.SubElement(suite, "properties")
    for verdict in VERDICTS:
        ET.SubElement(properties, "property", name=verdict, value=str(tally[verdict]))
    suite.extend(testcase(row, strict) for row in rows)
    ET.indent(root)
    return ET.ElementTree(root)


def write(result: dict, path: Path, strict: bool = False) -> Path:
    """Write the JUnit file for a parity result (harness/parity.py's `run`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        document(result, strict).write(tmp, encoding="utf-8", xml_declaration=True)
    return path
