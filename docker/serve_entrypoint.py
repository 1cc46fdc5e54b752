"""The serving image's entrypoint: `python -m serve` on the variants of the repository
mounted at $MODEL_REPOSITORY that this image's runtimes load ($FORMATS), on $HOST:$PORT.

The image holds ONNX Runtime and LiteRT only (no torch, no TensorFlow). Served as it is, a
repository with every format would leave its TorchScript and SavedModel variants
unavailable, and the server's strict readiness would never turn ready; so the variants of
$FORMATS are linked into a private repository and served, and the others are named here.
Arguments are passed on to `python -m serve` (e.g. --max-batch 32).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from export import repository
from train.config import FORMATS


def served(root: Path, formats: list[str]) -> dict[str, Path]:
    """The variants under root whose format is one of `formats`; prints the others."""
    chosen = {}
    for name, path in repository.variants(root).items():
        fmt = repository.read_manifest(path).get("format")
        if fmt in formats:
            chosen[name] = path
        else:
            print(f"[entrypoint] {name}: format {fmt} is not served by this image", flush=True)
    return chosen


def main() -> int:
    root = Path(os.environ.get("MODEL_REPOSITORY", "/models"))
    formats = os.environ.get("FORMATS", "").split()
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        print(f"FORMATS must name some of {', '.join(FORMATS)}; got {formats}", file=sys.stderr)
        return 2
    chosen = served(root, formats)
    if not chosen:
        print(
            f"no variant of {', '.join(formats)} in {root}: mount a model repository there "
            f"(-v $PWD/artifacts/model_repository:{root}:ro)",
            file=sys.stderr,
        )
        return 2
    linked = Path(tempfile.mkdtemp(prefix="repository-"))
    for name, path in chosen.items():
        (linked / name).symlink_to(path.resolve(), target_is_directory=True)
    env = os.environ.get
    command = [sys.executable, "-m", "serve", "--repository", str(linked)]
    command += ["--host", env("HOST", "0.0.0.0"), "--port", env("PORT", "8000")]
    command += ["--golden", env("GOLDEN", "none"), *sys.argv[1:]]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    sys.exit(main())
