"""The serving image's entrypoint: `python -m serve` on the variants of the repository
mounted at $MODEL_REPOSITORY that this image's runtimes load ($FORMATS), on $HOST:$PORT.

The image holds ONNX Runtime and LiteRT only (no torch, no TensorFlow). Served as it is, a
repository with every format would leave its TorchScript and SavedModel variants
unavailable, and the server's strict readiness would never turn ready. So when the
repository holds anything else, the variants of $FORMATS are copied into a private
repository (copied, not linked: the server refuses links that leave a repository) and
served from there, and every folder left out is named here with the reason. Arguments are
passed on to `python -m serve` (e.g. --max-batch 32).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from contract.formats import FORMAT_NAMES as FORMATS
from export import repository


def split(root: Path, formats: list[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """({name: folder} of the variants to serve, {name: why not} of the other folders)."""
    found = repository.variants(root)
    chosen, left_out = {}, {}
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if path.name not in found:
            left_out[path.name] = f"not a variant (no {repository.MANIFEST_FILE})"
            continue
        fmt = repository.read_manifest(path).get("format")
        if fmt in formats:
            chosen[path.name] = path
        else:
            left_out[path.name] = f"format {fmt} is not served by this image"
    return chosen, left_out


def main() -> int:
    root = Path(os.environ.get("MODEL_REPOSITORY", "/models"))
    formats = os.environ.get("FORMATS", "").split()
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        print(f"FORMATS must name some of {', '.join(FORMATS)}; got {formats}", file=sys.stderr)
        return 2
    chosen, left_out = split(root, formats) if root.is_dir() else ({}, {})
    if not chosen:
        print(
            f"no variant of {', '.join(formats)} in {root}: mount a model repository there "
            f"(-v $PWD/artifacts/model_repository:{root}:ro)",
            file=sys.stderr,
        )
        return 2
    serving = root
    if left_out:
        serving = Path(tempfile.mkdtemp(prefix="repository-"))
        for name, path in chosen.items():
            shutil.copytree(path, serving / name, symlinks=True)  # a link is checked, not copied
        for name, why in left_out.items():
            print(f"[entrypoint] {name}: left out, {why}", flush=True)
    env = os.environ.get
    command = [sys.executable, "-m", "serve", "--repository", str(serving)]
    command += ["--host", env("HOST", "0.0.0.0"), "--port", env("PORT", "8000")]
    command += ["--golden", env("GOLDEN", "none"), *sys.argv[1:]]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    sys.exit(main())
