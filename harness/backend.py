"""The one inference contract over every runtime: `Backend`.

A runner (harness/runners.py) wraps one runtime and does only `run(images) -> logits`.
`Backend` wraps any runner and owns the contract checks (input shape/dtype, output
shape/dtype/finite), softmax and top-k, so those live in one place.

    model = harness.load("artifacts/model_repository/torch.onnx")
    logits = model.predict(images)          # float32 [N, H, W, C], 0..255 -> [N, K]
    top = model.classify(images, k=3)       # labels and probabilities
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import checkpoint
from contract.formats import FORMATS
from export import repository
from harness.runners import RUNNERS, KerasEagerRunner, TorchEagerRunner

FLOAT32 = np.dtype(np.float32)  # compared as a dtype: no conversion from the type each call
# Values a Python pass checks sooner than numpy in a running server, where a ufunc and its
# reduction machinery are cold between requests (serve/tensors.py uses it too).
SMALL = 1024


class ContractError(ValueError):
    """Input or output outside the I/O contract; the message says what and how to fix it."""


class VariantError(RuntimeError):
    """A variant folder that cannot be served (missing, incomplete, tampered)."""


@dataclass
class Backend:
    """Any runner behind the one contract. `predict` is the only way in."""

    name: str
    runner: object
    input_shape: tuple[int, int, int]  # (H, W, C)
    labels: list[str]
    manifest: dict

    def check_input(self, images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.dtype != FLOAT32:
            got = getattr(images, "dtype", type(images).__name__)
            raise ContractError(f"{self.name}: images must be a float32 numpy array, got {got}")
        if images.ndim != 4 or images.shape[1:] != self.input_shape or images.shape[0] < 1:
            want = "[N, " + ", ".join(map(str, self.input_shape)) + "]"
            raise ContractError(
                f"{self.name}: images must have shape {want} (NHWC, N >= 1), "
                f"got {list(images.shape)}"
            )
        return images if images.flags.c_contiguous else np.ascontiguousarray(images)

    def check_output(self, logits: np.ndarray, n: int) -> np.ndarray:
        want = (n, len(self.labels))
        if logits.shape != want or logits.dtype != FLOAT32:
            raise ContractError(
                f"{self.name}: runtime returned {logits.dtype} {list(logits.shape)}, "
                f"contract is float32 {list(want)}"
            )
        if not finite(logits):
            raise ContractError(f"{self.name}: runtime returned non-finite logits")
        return logits

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = self.check_input(images)
        return self.check_output(self.runner.run(images), images.shape[0])

    def classify(self, images: np.ndarray, k: int = 3) -> list[list[dict]]:
        """Top-k per image: [{"label", "index", "probability"}], best first."""
        return top_k(self.predict(images), self.labels, k)


def finite(values: np.ndarray) -> bool:
    """No NaN or Inf. A small array is summed in Python (float32 values cannot overflow a
    float64 sum of SMALL; NaN or Inf make it NaN or Inf)."""
    if 0 < values.size <= SMALL and values.dtype == FLOAT32 and values.flags.c_contiguous:
        return math.isfinite(sum(memoryview(values).cast("B").cast("f")))
    return bool(np.isfinite(values).all())


def top_k(logits: np.ndarray, labels: list[str], k: int) -> list[list[dict]]:
    """Top-k of logits [N, K] per row, best first; ties keep class order (a stable sort),
    so every caller ranks int8's equal probabilities the same way."""
    probs = softmax(logits)
    k = max(1, min(k, probs.shape[1]))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        [{"label": labels[i], "index": int(i), "probability": float(p[i])} for i in row]
        for p, row in zip(probs, top, strict=True)
    ]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load(variant_dir: str | Path, threads: int = 0, verify: bool = True) -> Backend:
    """Build the Backend of one variant folder; refuses files whose sha256 does not match."""
    variant_dir = Path(variant_dir)
    try:
        read = repository.verify if verify else repository.read_manifest
        manifest = read(variant_dir)
    except repository.IntegrityError as e:
        raise VariantError(str(e)) from e
    fmt = manifest["format"]
    if fmt not in FORMATS:
        known = ", ".join(FORMATS)
        raise VariantError(f"{variant_dir.name}: unknown format {fmt!r}; known: {known}")
    runner = RUNNERS[FORMATS[fmt].runner](repository.artifact(variant_dir, manifest), threads)
    shape = tuple(manifest["input"]["shape"][1:])
    return Backend(manifest["name"], runner, shape, list(manifest["labels"]), manifest)


def eager(trainer: str, framework: str | None = None, checkpoints: Path | None = None) -> Backend:
    """The trained model itself, in `framework` (default: the one it was trained in).
    The reference that every variant of `trainer` is compared with."""
    ckpt = checkpoint.find(trainer, *(() if checkpoints is None else (checkpoints,)))
    framework = framework or ckpt.framework
    builders = {
        "torch": lambda: TorchEagerRunner(checkpoint.load_torch(ckpt)),
        "keras": lambda: KerasEagerRunner(checkpoint.load_keras(ckpt)),
    }
    if framework not in builders:
        raise ValueError(f"framework must be one of {', '.join(builders)}, got {framework!r}")
    runner = builders[framework]()
    spec = ckpt.spec
    shape = (spec.image_size, spec.image_size, spec.channels)
    name = f"{trainer}.eager-{framework}"
    return Backend(name, runner, shape, ckpt.labels, {"name": name, "trainer": trainer})
