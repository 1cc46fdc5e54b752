"""One record per deployment format: every fact about a format that more than one stage
reads. What a format needs besides its record is code: its exporter (export/matrix.py's
EXPORTERS, by format name) and its runner (harness/runners.py's RUNNERS, by `runner`);
tests/test_contract.py checks that every record has both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str  # the closed set of names: flags, folders, registry keys, test ids
    precision: str  # fp32 | fp16 | int8: the parity profile it is judged under
    artifact: str  # the model file (or folder) inside a version folder, Triton's name
    # Distributions of its exporter and runtime, whose versions its manifest records.
    packages: tuple[str, ...]
    runner: str  # the harness runner (harness/runners.py) that runs it in Python
    # config.pbtxt names the runtime by platform, by backend, or (pt2) by both.
    triton_platform: str = ""
    triton_backend: str = ""
    browser: str = ""  # the in-browser runtime of the web site, "" for none

    @property
    def edge(self) -> bool:
        """No Triton backend loads it, and Triton refuses a folder it cannot load: its
        variants go to artifacts/edge, not into the model repository."""
        return not (self.triton_platform or self.triton_backend)


_TF = ("tensorflow", "keras")
_TFLITE = {"triton_backend": "armnn_tflite", "browser": "litert"}  # Triton's TFLite backend
_ONNX = {"triton_platform": "onnxruntime_onnx", "browser": "onnxruntime-web"}
_ORT_QUANT = ("torch", "onnxscript", "onnx", "onnxruntime")

# The export matrix's formats, in the order every table and report lists them.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "torchscript",
            "fp32",
            "model.pt",
            ("torch",),
            "torchscript",
            triton_platform="pytorch_libtorch",
        ),
        Format(
            "pt2",
            "fp32",
            "model.pt2",
            ("torch",),
            "aoti",
            triton_platform="torch_aoti",
            triton_backend="pytorch",
        ),
        Format(
            "onnx",
            "fp32",
            "model.onnx",
            ("torch", "onnxscript", "onnx", "onnxruntime"),
            "onnxruntime",
            **_ONNX,
        ),
        Format(
            "onnx-tf",
            "fp32",
            "model.onnx",
            (*_TF, "tf2onnx", "onnx", "onnxruntime"),
            "onnxruntime",
            **_ONNX,
        ),
        # ONNX Runtime's own quantization (export/onnx_quant.py) of the torch.onnx file.
        Format("onnx-fp16", "fp16", "model.onnx", _ORT_QUANT, "onnxruntime", **_ONNX),
        Format("onnx-int8", "int8", "model.onnx", _ORT_QUANT, "onnxruntime", **_ONNX),
        Format(
            "savedmodel",
            "fp32",
            "model.savedmodel",
            _TF,
            "savedmodel",
            triton_platform="tensorflow_savedmodel",
        ),
        Format("tflite", "fp32", "model.tflite", (*_TF, "ai-edge-litert"), "litert", **_TFLITE),
        Format(
            "tflite-fp16", "fp16", "model.tflite", (*_TF, "ai-edge-litert"), "litert", **_TFLITE
        ),
        Format(
            "tflite-int8", "int8", "model.tflite", (*_TF, "ai-edge-litert"), "litert", **_TFLITE
        ),
        Format("pte", "fp32", "model.pte", ("torch", "executorch"), "executorch"),
    )
}
FORMAT_NAMES = tuple(FORMATS)
EDGE_FORMATS = tuple(name for name, f in FORMATS.items() if f.edge)
