"""One runner per runtime: `run(images) -> logits` and nothing else.

The contract checks live in harness/backend.py's `Backend`, never here. Each runner
imports its runtime when built, so a process that serves only ONNX never imports torch
or TensorFlow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np


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


class Pt2Runner:
    """An AOTInductor package: the compiled library runs the graph; torch only moves tensors."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import torch
        import torch._inductor

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = torch._inductor.aoti_load_package(str(path))

    def run(self, images: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(images)).numpy()


class PteRunner:
    """ExecuTorch's runtime, as on a phone. The program's memory is planned for its largest
    batch (read from the method's metadata), so larger batches run in chunks. One lock: a
    method owns its planned buffers."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import torch

        from export.torch_formats import quiet_torchao

        quiet_torchao()
        from executorch.runtime import Runtime

        if threads:  # one process-wide pool, sized before any method runs
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)
        self.torch = torch
        self.program = Runtime.get().load_program(str(path))  # the method borrows from it
        self.method = self.program.load_method("forward")
        self.max_batch = self.method.metadata.input_tensor_meta(0).sizes()[0]
        self.lock = threading.Lock()

    def run(self, images: np.ndarray) -> np.ndarray:
        step = self.max_batch
        with self.lock:
            chunks = [self.execute(images[i : i + step]) for i in range(0, len(images), step)]
        return np.concatenate(chunks)

    def execute(self, images: np.ndarray) -> np.ndarray:
        (logits,) = self.method.execute([self.torch.from_numpy(images)])
        return logits.numpy().copy()  # a copy: the output lives in the method's planned memory


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


# By runtime: a format's record names its runner (contract/formats.py).
RUNNERS: dict[str, Callable[..., object]] = {
    "torchscript": TorchScriptRunner,
    "aoti": Pt2Runner,
    "onnxruntime": OnnxRunner,
    "savedmodel": SavedModelRunner,
    "litert": LiteRunner,
    "executorch": PteRunner,
}


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
