"""Formats TensorFlow writes: `savedmodel`, `onnx-tf` (tf2onnx), and TFLite in fp32,
fp16 weights, and full int8.

Each exporter takes a Source and the artifact path and returns extra manifest fields.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from contract.names import OUTPUT_NAME
from export import onnx_file, repository
from export.saved_model import signature
from export.source import Source

ONNX_OPSET = 18  # the newest tf2onnx 1.17 supports
# LiteRT.js cannot resize an input: the page runs one image at a time, and the browser
# parity check runs the golden batch in chunks of the repository's max batch size.
FIXED_BATCHES = (1, repository.MAX_BATCH_SIZE)


def savedmodel(source: Source, path: Path) -> dict:
    shutil.copytree(source.saved_model, path)
    return {}


def onnx_tf(source: Source, path: Path) -> dict:
    import tf2onnx

    # from_keras rather than from_function: the latter turns the Normalization
    # layer's constants into extra graph inputs.
    model, _ = tf2onnx.convert.from_keras(
        source.keras_model, input_signature=[signature(source.spec)], opset=ONNX_OPSET
    )
    onnx_file.rename_output(model, OUTPUT_NAME)
    return {"opset": onnx_file.save(model, path)}


def tflite(source: Source, path: Path, precision: str) -> dict:
    """The dynamic-batch file, and beside it the same conversion at each of FIXED_BATCHES
    (listed in the manifest as `fixed_batch`) for runtimes that cannot resize an input."""
    path.write_bytes(convert_tflite(source, source.saved_model, precision))
    fixed = {}  # paths relative to the variant: <N>/model.b<batch>.tflite
    for batch in FIXED_BATCHES:
        file = repository.fixed_batch_file("tflite", batch)
        model = source.fixed_batch_saved_model(batch)
        (path.parent / file).write_bytes(convert_tflite(source, model, precision, batch))
        fixed[str(batch)] = f"{path.parent.name}/{file}"
    return {"fixed_batch": fixed}


def convert_tflite(source: Source, saved_model: Path, precision: str, batch: int = 1) -> bytes:
    """precision: fp32 | fp16 (float16 weights) | int8 (weights and activations, float32
    in and out so every client feeds the same tensor)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: calibration_batches(source, batch)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    elif precision != "fp32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    return converter.convert()


def calibration_batches(source: Source, batch: int) -> Iterator[list[np.ndarray]]:
    """The calibration images in batches of `batch`, the last one filled from the start.
    The calibrator keeps each activation's min and max over all of them, and a repeated
    image changes neither: every batch size gets the dynamic file's activation ranges, and
    a batch of 64 needs 5 calibration calls, not 300."""
    images = source.calibration_images
    wrapped = np.resize(images, (-(-len(images) // batch) * batch, *images.shape[1:]))
    for start in range(0, len(wrapped), batch):
        yield [wrapped[start : start + batch]]
