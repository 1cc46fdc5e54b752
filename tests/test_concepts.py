"""docs/concepts.md is executable: every ```python block runs on its own and must print
exactly the ```text block right under it."""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "concepts.md"

FENCE = re.compile(r"^```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
HEADING = re.compile(r"^## +(?P<title>.+?)[ \t]*$", re.M)


@dataclass(frozen=True)
class Snippet:
    id: str  # "<section slug>-<n>", n counting the section's python blocks from 1
    section: str
    line: int  # 1-based line of the code's first line in the document
    code: str
    expected: str


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def parse(text: str) -> list[Snippet]:
    """Every python block with the text block that must follow it (blank lines between
    allowed, nothing else). A python block without one is an error, not a skip."""
    blocks = list(FENCE.finditer(text))
    inside = [(b.start(), b.end()) for b in blocks]
    headings = [h for h in HEADING.finditer(text) if not any(s <= h.start() < e for s, e in inside)]
    snippets: list[Snippet] = []
    counts: dict[str, int] = {}
    for i, block in enumerate(blocks):
        if block.group("lang") != "python":
            continue
        line = text.count("\n", 0, block.start("body")) + 1
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if (
            following is None
            or following.group("lang") != "text"
            or text[block.end() : following.start()].strip()
        ):
            raise ValueError(
                f"line {line}: a python block must be followed directly by a text block "
                "holding what it prints"
            )
        above = [h for h in headings if h.start() < block.start()]
        section = slug(above[-1].group("title")) if above else "top"
        counts[section] = counts.get(section, 0) + 1
        snippets.append(
            Snippet(
                f"{section}-{counts[section]}",
                section,
                line,
                block.group("body"),
                following.group("body"),
            )
        )
    return snippets


def run(snippet: Snippet, filename: str) -> str:
    """Execute the snippet in a fresh namespace and return what it printed. The code is
    padded to its line in the file, so tracebacks (and tf.function, which reads the
    source) point at the document's own lines."""
    code = "\n" * (snippet.line - 1) + snippet.code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, filename, "exec"), {"__name__": "__concepts__"})
    return out.getvalue()


def normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def mismatch(snippet: Snippet, filename: str) -> str | None:
    """None when the snippet prints what the document says; else a diff (- doc, + run)."""
    expected, actual = normalise(snippet.expected), normalise(run(snippet, filename))
    if expected == actual:
        return None
    diff = difflib.unified_diff(expected, actual, "documented", "printed", lineterm="")
    return f"{filename}:{snippet.line} ({snippet.id}) prints something else:\n" + "\n".join(diff)


SNIPPETS = parse(DOC.read_text())


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_prints_what_the_document_says(snippet: Snippet) -> None:
    problem = mismatch(snippet, str(DOC))
    assert problem is None, problem


def test_checker_reports_a_wrong_output() -> None:
    wrong = parse("## Sum\n\n```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n")
    right = parse("## Sum\n\n```python\nprint(1 + 1)  \n```\n\n```text\n2\n\n```\n")
    assert [s.id for s in wrong] == ["sum-1"]
    problem = mismatch(wrong[0], "<wrong>")
    assert problem is not None
    assert "-3" in problem and "+2" in problem, problem
    assert mismatch(right[0], "<right>") is None


def test_checker_reports_a_wrong_output_in_the_document() -> None:
    (snippet,) = [s for s in SNIPPETS if s.id == "autograd-1"]
    assert "11.0 7.0" in snippet.expected
    altered = replace(snippet, expected=snippet.expected.replace("11.0 7.0", "11.0 8.0"))
    problem = mismatch(altered, str(DOC))
    assert problem is not None and "-11.0 8.0" in problem and "+11.0 7.0" in problem, problem


def test_checker_reports_an_extra_line() -> None:
    (snippet,) = parse("```python\nprint(2)\nprint(3)\n```\n```text\n2\n```\n")
    assert snippet.id == "top-1"
    problem = mismatch(snippet, "<extra>")
    assert problem is not None and "+3" in problem, problem


def test_python_block_without_its_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse("```python\nprint(1)\n```\nprose in between\n```text\n1\n```\n")
    with pytest.raises(ValueError, match="line 2"):
        parse("```python\nprint(1)\n```\n")
    assert parse("```sh\nmake test\n```\n") == []  # other languages are not run


def test_a_failing_snippet_points_at_its_line() -> None:
    (snippet,) = parse("intro\n\n```python\nx = 1\nraise KeyError(x)\n```\n```text\n```\n")
    with pytest.raises(KeyError) as caught:
        run(snippet, "<doc>")
    assert caught.traceback[-1].lineno + 1 == 5  # pytest counts lines from 0


def test_every_section_with_code_shows_both_frameworks() -> None:
    sections: dict[str, str] = {}
    for s in SNIPPETS:
        sections[s.section] = sections.get(s.section, "") + s.code
    assert len(sections) >= 6, sorted(sections)
    for name, code in sections.items():
        assert "import torch" in code, f"{name}: no PyTorch snippet"
        assert re.search(r"import (tensorflow|keras)", code), f"{name}: no TensorFlow snippet"


def test_readme_links_the_document() -> None:
    assert "(docs/concepts.md)" in (ROOT / "README.md").read_text()
