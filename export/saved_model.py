"""A Keras model as a SavedModel under the I/O contract: the `savedmodel` format copies it,
the TFLite converter and tf2onnx read its signature (export/source.py builds it once per
checkpoint, export/tf_formats.py converts it)."""

from __future__ import annotations

from pathlib import Path

from contract.names import INPUT_NAME, OUTPUT_NAME
from contract.spec import CNNSpec


def signature(spec: CNNSpec, batch: int | None = None):
    """The one input: float32 [N, H, W, C] named `images`, N dynamic unless `batch` is given."""
    import tensorflow as tf

    shape = [batch, spec.image_size, spec.image_size, spec.channels]
    return tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)


def write_saved_model(model, spec: CNNSpec, path: Path, batch: int | None = None) -> None:
    """A SavedModel whose `serving_default` maps `images` to {"logits": ...}; `batch` fixes
    the batch dimension (a scratch model for a fixed-batch TFLite file).

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
        input_signature=[signature(spec, batch)],
    )
    archive.write_out(str(path), verbose=False)
