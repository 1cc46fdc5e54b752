"""Formats TensorFlow writes: `savedmodel`, `onnx-tf` (tf2onnx), and TFLite in fp32,
fp16 weights, and full int8.

Each exporter takes a Source and the artifact path and returns extra manifest fields.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from export import onnx_file
from export.source import Source
from train.config import INPUT_NAME, OUTPUT_NAME, CNNSpec

ONNX_OPSET = 18  # the newest tf2onnx 1.17 supports


def signature(spec: CNNSpec):
    """The one input: float32 [N, H, W, C] named `images`, N dynamic."""
    import tensorflow as tf

    shape = [None, spec.image_size, spec.image_size, spec.channels]
    return tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)


def write_saved_model(model, spec: CNNSpec, path: Path) -> None:
    """A SavedModel whose `serving_default` maps `images` to {"logits": ...}.

    Keras' ExportArchive is tf.saved_model.save of a tracked tf.function, but it
    tracks the variables so that the TFLite converter can freeze them; a plain
    tf.Module holding the model gave a TFLite file with unfrozen READ_VARIABLE ops.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda images: {OUTPUT_NAME: model(images, training=False)},
        input_signature=[signature(spec)],
    )
    archive.write_out(str(path), verbose=False)


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
    """precision: fp32 | fp16 (float16 weights) | int8 (weights and activations, float32
    in and out so every client feeds the same tensor)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(source.saved_model))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        images = source.calibration_images
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    elif precision != "fp32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    path.write_bytes(converter.convert())
    return {}
