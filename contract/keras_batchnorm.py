"""Keras' BatchNormalization with PyTorch's running statistics: a layer of the Keras build
(contract/keras_cnn.py), so every reader of a .keras file has it registered.

torch updates the running variance with the unbiased batch variance (x n / (n - 1)), Keras
with the biased one; both normalise with the biased one. Under tf.distribute with several
replicas, Keras' layer normalises each replica's part of the batch with its own statistics;
this one uses the global batch's, as one device does (and as the torch trainer does under
torchrun). Inference is Keras' own code, so every export and the exact weight transfer are
unchanged. Its optimizer twin, `TorchAdam`, is training's: train/keras_match.py.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tandem")
class TorchBatchNorm(layers.BatchNormalization):
    """BatchNormalization whose moving variance follows torch's running_var: updated with
    the unbiased batch variance. Training normalises with the biased one, as both do.
    Under several tf.distribute replicas the statistics are the global batch's."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        inputs = ops.cast(inputs, "float32")
        mean, variance, n = self.batch_moments(inputs)
        unbiased = variance * (n / (n - 1))
        keep, new = self.momentum, 1.0 - self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * new)
        self.moving_variance.assign(self.moving_variance * keep + unbiased * new)
        outputs = ops.batch_normalization(
            inputs,
            mean,
            variance,
            axis=self.axis,
            offset=self.beta,
            scale=self.gamma,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def batch_moments(self, inputs):
        """(mean, biased variance, values per channel) of the batch: Keras' own moments on one
        replica; under several, of every replica's part together (each all-reduce passes
        its gradient back all-reduced, so the gradients are the global batch's too)."""
        n = ops.cast(ops.size(inputs) // inputs.shape[-1], inputs.dtype)
        replicas = tf.distribute.get_replica_context()
        if replicas is None or replicas.num_replicas_in_sync == 1:
            mean, variance = self._moments(inputs, None)
            return mean, variance, n

        def total(x):
            return replicas.all_reduce(tf.distribute.ReduceOp.SUM, x)

        n = total(n)
        mean = total(ops.sum(inputs, self._reduction_axes)) / n
        variance = total(ops.sum(ops.square(inputs - mean), self._reduction_axes)) / n
        return mean, variance, n
