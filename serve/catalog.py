"""What the server offers from a model repository: every folder, served or refused and why.

The repository's own rules (export/repository.py: a manifest that reads, no symlink out
of a variant) plus the server's rules for names, which become URL path segments:

- only [A-Za-z0-9._-], so a name reads the same in a URL, a log line and a metric label;
- none that a fixed route answers first: `GET /v2/models/stats` is every model's
  statistics, so a variant named `stats` could never show its metadata.

A refused folder is listed UNAVAILABLE with its reason, never skipped in silence;
dot-folders (exports in progress) are not variants and are not listed.
Answers name variants, never filesystem paths: `without_paths` rewrites what runtimes say.
"""

from __future__ import annotations

import re
from pathlib import Path

from export import repository

NAME = re.compile(r"[A-Za-z0-9._-]+")
# Names a fixed route takes before /v2/models/{name} (or /v1/models/{name}, /classify/{name})
# could; tests/test_serve_repository.py walks the route table to keep this whole.
SHADOWED = frozenset({"stats"})


def refusal(root: Path, name: str) -> str | None:
    """Why <root>/<name> cannot be served ("" when it can), or None when it is no
    candidate at all: missing, a dot-folder, or not a folder."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        return None
    folder = Path(root) / name
    if not folder.is_dir():
        return None
    if not NAME.fullmatch(name):
        return "the name has characters outside A-Z a-z 0-9 . _ -; rename the folder"
    if name in SHADOWED:
        return f"the route /v2/models/{name} answers before a model could; rename the folder"
    return repository.refusal(root, name)


def scan(root: Path) -> dict[str, str]:
    """{name: "" for a variant to serve, else why it is refused}, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {path.name: refusal(root, path.name) for path in sorted(root.iterdir())}
    return {name: why for name, why in found.items() if why is not None}


def without_paths(text: str, root: Path) -> str:
    """`text` with the repository's absolute location taken out: <root>/torch.onnx/1/x
    reads torch.onnx/1/x. Runtimes name the files they fail on; clients learn the
    variant, not the server's filesystem."""
    root = Path(root).absolute()
    for where in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
        text = text.replace(where + "/", "").replace(where, "the model repository")
    return text
