"""Writing a file so that a reader sees the old one or the new one, never half of one:
write beside it under a hidden temporary name, then rename (atomic on one filesystem)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for any writer (savefig, np.savez, torch.save, Keras'
    save); renamed onto `path` when the block ends, removed if it raises. The temporary
    name keeps the suffix (`.curves.<pid>.tmp.png`), from which those writers pick the
    format; the pid keeps two processes writing the same file apart."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
