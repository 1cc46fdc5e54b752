"""The one CNN in Keras, built from CNNSpec: a mirror of contract/torch_cnn.py.

Scaling and normalisation live inside the model (Rescaling + Normalization), so
every export carries them. BatchNorm is `TorchBatchNorm` (contract/keras_batchnorm.py):
Keras' layer with torch's running-variance update, so both builds keep the same statistics.

Imports keras and TensorFlow: import this module only where a Keras model is built.
"""

from __future__ import annotations

import keras
from keras import layers

from contract.keras_batchnorm import TorchBatchNorm
from contract.names import INPUT_NAME, OUTPUT_NAME, PIXEL_MAX
from contract.spec import CNNSpec


def build(spec: CNNSpec, seed: int = 0, policy: str = "float32") -> keras.Model:
    """policy: Keras' dtype policy of every layer but the logits, which compute and return
    float32 whatever it is ("mixed_bfloat16" for --bf16: bf16 compute, float32 weights)."""
    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)  # each layer takes it as it is made
    try:
        return assemble(spec)
    finally:
        keras.config.set_dtype_policy(previous)


def assemble(spec: CNNSpec) -> keras.Model:
    images = keras.Input((spec.image_size, spec.image_size, spec.channels), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / PIXEL_MAX, name="rescale")(images)
    x = layers.Normalization(
        mean=list(spec.mean), variance=[s * s for s in spec.std], name="normalize"
    )(x)
    keep = 1.0 - spec.bn_momentum  # Keras' momentum: the weight of the old statistics
    i = 0
    for stage, width in enumerate(spec.widths):
        for _ in range(spec.convs_per_stage):
            x = layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
            x = TorchBatchNorm(epsilon=spec.bn_eps, momentum=keep, name=f"bn{i}")(x)
            x = layers.ReLU(name=f"relu{i}")(x)
            i += 1
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    if spec.head == "flatten":
        x = layers.Flatten(name="flatten")(x)  # (N, H*W*C) in NHWC order
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)  # (N, C)
    x = layers.Dropout(spec.dropout, name="drop0")(x)
    x = layers.Dense(spec.hidden, activation="relu", name="fc0")(x)
    x = layers.Dropout(spec.dropout, name="drop1")(x)
    # float32 under any policy, so the loss, every export and the parity contract get float32
    logits = layers.Dense(spec.num_classes, dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(images, logits, name="cnn")


def convs(model: keras.Model) -> list[layers.Conv2D]:
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]


def norms(model: keras.Model) -> list[layers.BatchNormalization]:
    return [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]


def denses(model: keras.Model) -> list[layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, layers.Dense)]
