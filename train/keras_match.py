"""Keras' Adam and BatchNormalization with PyTorch's arithmetic, so the three trainers take
the same steps from the same weights. `TorchAdam` is here; `TorchBatchNorm` is a layer of
the Keras build itself (contract/keras_batchnorm.py), so every reader of a .keras file has it.

PyTorch is the reference; Keras adapts through its documented extension points
(`Optimizer.update_step`, `Layer.call`). The differences found, each checked on a toy
problem before it was matched (docs/lockstep.md):

- Adam epsilon. torch: `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`. Keras:
  `p -= lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)`, i.e. epsilon divided by sqrt(bc2)
  (bc = 1 - beta**t): 32x torch's at step 1. `TorchAdam` computes torch's update, in
  torch's order of operations.
- BatchNorm running variance. torch updates it with the unbiased batch variance
  (x n / (n - 1)), Keras with the biased one; both normalise with the biased one.
  `TorchBatchNorm` updates with the unbiased variance. Inference is Keras' own code, so
  every export and the exact weight transfer are unchanged.
- BatchNorm under tf.distribute with several replicas: Keras' layer normalises each
  replica's part of the batch with its own statistics. `TorchBatchNorm` uses the global
  batch's, all replicas together, as one device does (and as the torch trainer does under
  torchrun: train/distributed.py).

Both are registered (package "tandem"), so a saved .keras file loads wherever the Keras
build is imported.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tandem")
class TorchAdam(keras.optimizers.Adam):
    """Adam whose update is torch.optim.Adam's (amsgrad and weight decay not offered)."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        bias_correction1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_correction2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        # torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, ...)
        self.assign(m, m + (gradient - m) * (1 - self.beta_1))
        self.assign(v, v * self.beta_2 + gradient * gradient * (1 - self.beta_2))
        # torch: denom = sqrt(v) / sqrt(bc2) + eps; param.addcdiv_(m, denom, -lr / bc1)
        denom = ops.sqrt(v) / ops.sqrt(bias_correction2) + self.epsilon
        self.assign_sub(variable, (lr / bias_correction1) * (m / denom))


@keras.saving.register_keras_serializable(package="tandem")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """train/schedule.py:factor x lr, in Keras ops: the optimizer evaluates it at its step
    count before each update, as torch's LambdaLR holds it for that step."""

    def __init__(self, lr: float, total: int, warmup: int = 0) -> None:
        self.lr, self.total, self.warmup = float(lr), int(total), int(warmup)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        span = float(max(self.total - self.warmup, 1))
        warm = (step + 1.0) / float(max(self.warmup, 1))
        progress = ops.minimum(step - float(self.warmup), span) / span
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.lr * ops.where(step < float(self.warmup), warm, cosine)

    def get_config(self) -> dict:
        return {"lr": self.lr, "total": self.total, "warmup": self.warmup}
