"""One inference contract over every runtime.

A *runner* wraps one runtime and does only `run(images) -> logits`. `Backend` wraps any
runner and owns the contract checks (input shape/dtype, output shape/dtype/finite),
softmax and top-k, so those live in one place. Runners are found in a dict registry
keyed by format; heavy runtimes are imported lazily by the runner that needs them.

    model = harness.load("artifacts/model_repository/torch.onnx")
    logits = model.predict(images)          # float32 [N, H, W, C], 0..255 -> [N, K]
    top = model.classify(images, k=3)       # labels and probabilities
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.config import ARTIFACT_FILE, MANIFEST_FILE, MODEL_REPOSITORY


class ContractError(ValueError):
    """Input or output outside the I/O contract; the message says what and how to fix it."""


class VariantError(RuntimeError):
    """A variant folder that cannot be served (missing, incomplete, tampered)."""


class TorchScriptRunner:
    def __init__(self, path: Path, threads: int = 0) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(self, images: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.module(self.torch.from_numpy(images)).numpy()


class OnnxRunner:
    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = [self.session.get_outputs()[0].name]

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(self.output, {self.input: images})[0]


class SavedModelRunner:
    def __init__(self, path: Path, threads: int = 0) -> None:
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
        self.signature = self.loaded.signatures["serving_default"]
        self.output = next(iter(self.signature.structured_outputs))

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.signature(images=self.tf.constant(images))[self.output].numpy()


class LiteRunner:
    """LiteRT interpreter. Not thread-safe, and resizing reallocates: one lock per model."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = -1
        self.lock = threading.Lock()

    def run(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            if images.shape[0] != self.batch:
                self.interpreter.resize_tensor_input(self.input, images.shape, strict=False)
                self.interpreter.allocate_tensors()
                self.batch = images.shape[0]
            self.interpreter.set_tensor(self.input, images)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output).copy()


RUNNERS: dict[str, Callable[..., object]] = {
    "torchscript": TorchScriptRunner,
    "onnx": OnnxRunner,
    "onnx-tf": OnnxRunner,
    "savedmodel": SavedModelRunner,
    "tflite": LiteRunner,
    "tflite-fp16": LiteRunner,
    "tflite-int8": LiteRunner,
}


@dataclass
class Backend:
    """Any runner behind the one contract. `predict` is the only way in."""

    name: str
    runner: object
    input_shape: tuple[int, int, int]  # (H, W, C)
    labels: list[str]
    manifest: dict

    def check_input(self, images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.dtype != np.float32:
            got = getattr(images, "dtype", type(images).__name__)
            raise ContractError(f"{self.name}: images must be a float32 numpy array, got {got}")
        if images.ndim != 4 or images.shape[1:] != self.input_shape or images.shape[0] < 1:
            want = "[N, " + ", ".join(map(str, self.input_shape)) + "]"
            raise ContractError(
                f"{self.name}: images must have shape {want} (NHWC, N >= 1), "
                f"got {list(images.shape)}"
            )
        return np.ascontiguousarray(images)

    def check_output(self, logits: np.ndarray, n: int) -> np.ndarray:
        want = (n, len(self.labels))
        if logits.shape != want or logits.dtype != np.float32:
            raise ContractError(
                f"{self.name}: runtime returned {logits.dtype} {list(logits.shape)}, "
                f"contract is float32 {list(want)}"
            )
        if not np.isfinite(logits).all():
            raise ContractError(f"{self.name}: runtime returned non-finite logits")
        return logits

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = self.check_input(images)
        return self.check_output(self.runner.run(images), images.shape[0])

    def classify(self, images: np.ndarray, k: int = 3) -> list[list[dict]]:
        """Top-k per image: [{"label", "index", "probability"}], best first."""
        return top_k(self.predict(images), self.labels, k)


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


def read_manifest(variant_dir: Path) -> dict:
    path = Path(variant_dir) / MANIFEST_FILE
    if not path.is_file():
        raise VariantError(
            f"{variant_dir} is not a model variant (no {MANIFEST_FILE}); run `make export`"
        )
    return json.loads(path.read_text())


def load(variant_dir: str | Path, threads: int = 0, verify: bool = True) -> Backend:
    """Build the Backend of one variant folder; refuses files whose sha256 does not match."""
    variant_dir = Path(variant_dir)
    manifest = read_manifest(variant_dir)
    if verify:
        from export import repository

        repository.verify(variant_dir)
    fmt = manifest["format"]
    if fmt not in RUNNERS:
        raise VariantError(f"{variant_dir}: unknown format {fmt!r}; known: {', '.join(RUNNERS)}")
    runner = RUNNERS[fmt](variant_dir / ARTIFACT_FILE[fmt], threads)
    shape = tuple(manifest["input"]["shape"][1:])
    return Backend(manifest["name"], runner, shape, list(manifest["labels"]), manifest)


class TorchEagerRunner:
    def __init__(self, net) -> None:
        import torch

        self.torch, self.net = torch, net.eval()

    def run(self, images: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(images)).numpy()


class KerasEagerRunner:
    def __init__(self, model) -> None:
        self.model = model

    def run(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)


def eager(trainer: str, framework: str | None = None, checkpoints: Path | None = None) -> Backend:
    """The trained model itself, in `framework` (default: the one it was trained in).
    The reference that every variant of `trainer` is compared with."""
    from train import checkpoint

    ckpt = checkpoint.find(trainer, *(() if checkpoints is None else (checkpoints,)))
    framework = framework or ckpt.framework
    if framework == "torch":
        runner = TorchEagerRunner(checkpoint.load_torch(ckpt))
    elif framework == "keras":
        runner = KerasEagerRunner(checkpoint.load_keras(ckpt))
    else:
        raise ValueError(f"framework must be torch or keras, got {framework!r}")
    spec = ckpt.spec
    shape = (spec.image_size, spec.image_size, spec.channels)
    name = f"{trainer}.eager-{framework}"
    return Backend(name, runner, shape, ckpt.labels, {"name": name, "trainer": trainer})


def variants(root: str | Path = MODEL_REPOSITORY) -> dict[str, Path]:
    """Complete variant folders under a model repository, by name (temp folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
    }
