"""ONNX Runtime's own quantization of the torch.onnx file: `onnx-int8` (static QDQ,
calibrated on the images `tflite-int8` is calibrated on) and `onnx-fp16` (float16 weights
and tensors, float32 input and output).

Both start from an fp32 file exported as the `onnx` format's is (torch_formats.onnx),
once per source, in its scratch folder. The quantizer's choices were measured on digits
(docs/export.md, "ONNX Runtime int8"): MinMax, Entropy and Percentile calibration, per
channel or per tensor, give the same verdict there; MinMax per channel is kept, the
smallest error of them and the calibration that needs no equal-sized batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from contract.names import INPUT_NAME
from export import onnx_file, torch_formats
from export.source import Source

# How the int8 file is made, recorded in its manifest.
INT8 = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ",
    "calibration": "MinMax",
    "per_channel": True,
    "activations": "int8",
    "weights": "int8",
}
CALIBRATION_BATCH = 32  # images per calibration call: memory, not the ranges, depends on it


def fp32_file(source: Source) -> Path:
    """The torch.onnx file in the source's scratch folder, exported at most once."""
    path = source.scratch / "model.fp32.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch_formats.onnx(source, path)
    return path


def calibration_reader(images: np.ndarray, input_name: str):
    """onnxruntime.quantization's CalibrationDataReader over `images`, in batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict] = (
                {input_name: images[i : i + CALIBRATION_BATCH]}
                for i in range(0, len(images), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    return Reader()


def quantize_int8(
    source: Source, out: Path, calibration: str = "MinMax", per_channel: bool = True
) -> Path:
    """Static QDQ quantization of the source's torch.onnx file into `out`: int8 weights
    (one scale per output channel, or one per tensor) and int8 activations whose ranges
    `calibration` (MinMax, Entropy or Percentile) takes from the calibration images;
    quant_pre_process first (shape inference, BatchNorm folded into the convolutions), as
    ONNX Runtime advises. The histogram calibrators need batches of one size: the images
    are cut to a multiple of CALIBRATION_BATCH for them."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.scratch / "model.pre.onnx"
    if not prepared.exists():
        quant_pre_process(str(fp32_file(source)), str(prepared))
    images = source.calibration_images
    if calibration != "MinMax" and len(images) >= CALIBRATION_BATCH:
        images = images[: len(images) // CALIBRATION_BATCH * CALIBRATION_BATCH]
    quantize_static(
        str(prepared),
        str(out),
        calibration_reader(images, INPUT_NAME),  # torch_formats.onnx names it so
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, calibration),
    )
    return out


def onnx_int8(source: Source, path: Path) -> dict:
    """The int8 variant: quantize_int8 with INT8's choices."""
    import onnx

    quantized = quantize_int8(
        source, source.scratch / "model.int8.onnx", INT8["calibration"], INT8["per_channel"]
    )
    opset = onnx_file.save(onnx.load(str(quantized)), path)
    images = len(source.calibration_images)
    return {"opset": opset, "quantization": {**INT8, "calibration_images": images}}


def onnx_fp16(source: Source, path: Path) -> dict:
    """Every float32 initializer and tensor in float16, with casts at the input and the
    output so clients feed and read float32 as for every other variant. ONNX Runtime's CPU
    provider casts back to float32 around an op it has no float16 kernel for; a GPU
    provider computes in float16."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(fp32_file(source))), keep_io_types=True)
    OnnxModel(model).topological_sort()  # the converter appends its input casts last
    return {"opset": onnx_file.save(model, path), "quantization": {"weights": "fp16"}}
