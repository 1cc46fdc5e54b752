"""The golden set: the fixed images every variant is judged on, with the eager reference
logits, saved as golden.npz so that a run can be replayed and the server can replay them at
start-up (serve/models.py).

Per trainer: the held-out images of the checkpoint's own split (test, then val, labelled: the
model never trained on them; at most HELD_OUT_IMAGES), then two kinds of unlabelled rows
(harness/verdict.py says what each is for): seeded uniform noise (RANDOM), far from any
training image, and seeded mixes of two held-out images (BLEND), unlike any but within their
range. So real, blended and out-of-distribution inputs are all covered.

golden.npz: `images_<t>`, `labels_<t>` (RANDOM -1, BLEND -2: unlabelled), `reference_<t>`
(the eager logits), `name_<t>` (the reference's name), `checkpoint_<t>` (the sha256 of the
checkpoint they come from) per trainer, and `images` when every trainer shares one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import checkpoint
from contract.files import atomic_path
from export.repository import sha256_file
from harness.backend import eager
from harness.verdict import BLEND, RANDOM

GOLDEN_FILE = "golden.npz"
RANDOM_IMAGES = 64  # uniform noise: label RANDOM
BLEND_IMAGES = 64  # two held-out images mixed: label BLEND
# Labelled held-out images at most (test first, then validation): enough for the verdict's
# bounds (a pass with no miss needs 268 at a 1% allowance), and a golden file of the same
# size whatever the folder holds (1024 RGB images at 64 px: 50 MB of float32).
HELD_OUT_IMAGES = 1024


@dataclass
class Golden:
    """One trainer's golden inputs."""

    images: np.ndarray  # (N, H, W, C) float32
    labels: np.ndarray  # (N,) int64; RANDOM or BLEND for the unlabelled rows


def golden_set(trainer: str, checkpoints: Path, seed: int = 0) -> Golden:
    """The checkpoint's held-out images, then seeded noise and blends of the same shape."""
    splits = checkpoint.find(trainer, checkpoints).splits()
    tests = min(len(splits.test.labels), HELD_OUT_IMAGES)
    vals = min(len(splits.val.labels), HELD_OUT_IMAGES - tests)
    held_out = [splits.test.take(np.arange(tests)), splits.val.take(np.arange(vals))]
    rng = np.random.default_rng(seed)
    real = np.concatenate([np.asarray(d.images, np.float32) for d in held_out])
    noise = rng.uniform(0, 255, (RANDOM_IMAGES, *real.shape[1:])).astype(np.float32)
    pairs = rng.integers(0, len(real), (BLEND_IMAGES, 2))
    alpha = rng.uniform(0.3, 0.7, (BLEND_IMAGES, 1, 1, 1)).astype(np.float32)
    blends = alpha * real[pairs[:, 0]] + (1 - alpha) * real[pairs[:, 1]]
    unlabelled = [np.full(RANDOM_IMAGES, RANDOM), np.full(BLEND_IMAGES, BLEND)]
    labels = np.concatenate([*(d.labels for d in held_out), *unlabelled])
    return Golden(np.concatenate([real, noise, blends]), labels)


def load_or_build(
    trainers: list[str], checkpoints: Path, path: Path, replay: bool
) -> tuple[dict[str, Golden], dict[str, tuple[str, np.ndarray]]]:
    """Golden inputs and reference logits per trainer; saved so a run can be replayed."""
    if replay:
        if not path.is_file():
            raise SystemExit(f"--replay needs {path}: run `make parity` once without it")
        saved = np.load(path)
        goldens = {t: Golden(saved[f"images_{t}"], saved[f"labels_{t}"]) for t in trainers}
        refs = {t: (str(saved[f"name_{t}"]), saved[f"reference_{t}"]) for t in trainers}
        return goldens, refs
    goldens, refs, arrays = {}, {}, {}
    for t in trainers:
        goldens[t] = golden_set(t, checkpoints)
        model = eager(t, checkpoints=checkpoints)
        refs[t] = (model.name, model.predict(goldens[t].images))
        arrays |= {
            f"images_{t}": goldens[t].images,
            f"labels_{t}": goldens[t].labels,
            f"reference_{t}": refs[t][1],
            f"name_{t}": np.array(model.name),
            # The run the reference comes from: a server judges only versions exported
            # from this checkpoint against it (serve/models.py).
            f"checkpoint_{t}": np.array(sha256_file(checkpoint.find(t, checkpoints).weights)),
        }
    first = goldens[trainers[0]].images
    if all(np.array_equal(g.images, first) for g in goldens.values()):
        arrays["images"] = first  # one shared golden batch, e.g. for the server's start-up replay
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return goldens, refs


class Saved:
    """A saved golden.npz, read for one trainer at a time (the server's start-up replay).
    A missing file reads as empty: each variant then gets the server's seeded check."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.arrays = dict(np.load(path)) if path is not None and path.is_file() else {}

    def checkpoint(self, trainer: str) -> str | None:
        """The sha256 of the checkpoint whose eager logits are the reference (None: a golden
        file made before it was recorded)."""
        made_from = self.arrays.get(f"checkpoint_{trainer}")
        return None if made_from is None else str(made_from)

    def batch(self, trainer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(images, labels, reference logits) of `trainer`, or None when not saved."""
        reference = self.arrays.get(f"reference_{trainer}")
        images = self.arrays.get(f"images_{trainer}", self.arrays.get("images"))
        if reference is None or images is None:
            return None
        labels = self.arrays.get(f"labels_{trainer}", np.full(len(images), -1))
        return images.astype(np.float32, copy=False), labels, reference
