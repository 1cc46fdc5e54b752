"""The Keras trainers under tf.distribute.

- keras-tape across processes and hosts: MultiWorkerMirroredStrategy, one process per host
  started with TF_CONFIG (on one host: `python -m train.multiworker`); or across the devices
  of one host: MirroredStrategy (--replicas N).
- keras-fit across the devices of one host only: MirroredStrategy (--replicas N). Across
  hosts model.fit fails in Keras 3 (train/cluster.py:FIT_MULTIWORKER_ISSUE), so it is refused.

What makes N replicas train the model one device would (docs/distributed.md), the same
rules as the torch trainer's under torchrun (train/distributed.py):
- Every step takes the global batch `data.batches(...)[step]`; replica r takes its
  contiguous part (train/cluster.py:shard), so gathered logits are in batch order.
- keras-tape: the loss is `tf.nn.compute_average_loss` over the global batch size and the
  optimizer sums the replicas' gradients: the global batch's mean gradient, also when a
  batch splits unevenly. keras-fit: Keras averages the replicas' mean losses, which equals
  it for equal parts only (docs/distributed.md: measured for the last batch of an epoch).
- BatchNorm uses the global batch's statistics (contract/keras_batchnorm.py).
- Only the chief writes (train/cluster.py:own_output).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from contract import datasets
from contract.spec import CNNSpec
from train import cluster, data
from train.config import TrainConfig

# A worker that waits this long for the others in a collective gives up with an error
# instead of hanging (python -m train.multiworker also stops every worker once one dies).
TIMEOUT_S = int(os.environ.get("TANDEM_DIST_TIMEOUT_S", 120))


def strategy(cfg: TrainConfig) -> tf.distribute.Strategy | None:
    """The run's strategy, None for one device. Call it before TensorFlow runs any op: it
    may lay out logical devices and join the cluster in TF_CONFIG."""
    refused = cluster.refused(cfg, [cfg.trainer])
    if refused:
        raise SystemExit(refused)
    if cluster.tf_config_process().size > 1:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if cfg.replicas > 1:
        return tf.distribute.MirroredStrategy(local_devices(cfg.replicas, cfg.device))
    return None


def local_devices(n: int, requested: str) -> list[str]:
    """n GPUs of this host, or n logical devices on its CPU (they stand in for GPUs in the
    tests; a real CPU gains nothing from them)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and requested != "cpu":
        if len(gpus) < n:
            raise SystemExit(f"--replicas {n}: TensorFlow sees {len(gpus)} GPU(s) here")
        return [f"/gpu:{i}" for i in range(n)]
    if requested == "cuda":
        raise SystemExit("--device cuda: TensorFlow sees no GPU here; use --device cpu or auto")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n
        )
    except RuntimeError:  # TensorFlow has started in this process: its devices are fixed
        if len(tf.config.list_logical_devices("CPU")) != n:
            raise SystemExit(
                f"--replicas {n}: TensorFlow already runs in this process with other CPU "
                "devices; train this trainer in a process of its own"
            ) from None
    return [f"/cpu:{i}" for i in range(n)]


def placed(strategy: tf.distribute.Strategy | None, device: str):
    """Where the loop runs: on one device, or where the strategy puts each replica."""
    return contextlib.nullcontext() if strategy else tf.device(device)


_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build(
    strategy: tf.distribute.Strategy | None,
    build_fn: Callable,
    cfg: TrainConfig,
    splits: datasets.Splits,
    spec: CNNSpec,
) -> tuple:
    """build_fn(cfg, splits, spec) -> (model, ...), in the strategy's scope with the
    optimizer's variables (a replica context cannot create them on the first
    apply_gradients); and, outside the scope, a one-device twin for one_device."""
    if strategy is None:
        return build_fn(cfg, splits, spec)
    order = data.batches(len(splits.train.labels), cfg.batch_size, cfg.seed, 0)
    cluster.check_batches(order[: cfg.max_steps or None], strategy.num_replicas_in_sync)
    with strategy.scope():
        built = build_fn(cfg, splits, spec)
        model = built[0]
        model.optimizer.build(model.trainable_variables)
    twin = keras.models.clone_model(model)
    twin.compile(loss=model.loss)
    _TWINS[model] = twin
    return built


def one_device(model: keras.Model) -> keras.Model:
    """model itself, or under a strategy its one-device twin holding its weights now:
    predict_on_batch under a strategy runs every replica on the whole batch (N x the rows),
    and a Keras loss in the strategy's scope divides by the number of replicas."""
    twin = _TWINS.get(model)
    if twin is None:
        return model
    twin.set_weights(model.get_weights())
    return twin


def local_part(strategy: tf.distribute.Strategy | None) -> tuple[int, int, int]:
    """This process's replicas among all of the job's: (first, count, total), for
    data.stream. One device, or MirroredStrategy's devices: every replica.
    MultiWorkerMirrored: each worker the same number of consecutive ones, its own devices."""
    if strategy is None:
        return 0, 1, 1
    me, total = cluster.tf_config_process(), strategy.num_replicas_in_sync
    return me.rank * (total // me.size), total // me.size, total


def step_function(strategy: tf.distribute.Strategy, model: keras.Model) -> Callable:
    """keras-tape's step across replicas, called as the one-device step is: this process's
    part of the global batch (`local_part`: its replicas' rows) and the global batch's size
    in, (mean loss, the global batch's logits in its order) out."""
    first, count, replicas = local_part(strategy)

    def replica_step(images, labels, batch_size):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, logits

    @tf.function(reduce_retracing=True)
    def global_step(images, labels, batch_size):
        loss, logits = strategy.run(replica_step, args=(images, labels, batch_size))
        return strategy.reduce("SUM", loss, axis=None), strategy.gather(logits, axis=0)

    def step(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple:
        # each local replica's rows of this process's part: cluster.shard's parts of the
        # global batch, counted from this process's first replica
        parts_of = np.array_split(np.arange(batch_size), replicas)  # cluster.shard's parts
        sizes = [len(p) for p in parts_of[first : first + count]]
        bounds = np.cumsum([0, *sizes])

        def parts(values: np.ndarray):
            def mine(ctx):
                j = ctx.replica_id_in_sync_group - first
                return values[bounds[j] : bounds[j + 1]]

            return strategy.experimental_distribute_values_from_function(mine)

        total = tf.constant(batch_size, tf.int64)
        return global_step(parts(images), parts(labels), total)

    return step
