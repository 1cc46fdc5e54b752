"""Trainer `keras-tape`: a tf.GradientTape loop. Mirror image of train/torch_loop.py: the
same functions, in the same order, with the same log line. `keras-fit` (train/keras_fit.py)
shares `build`, `reseed`, `evaluate` and `save`, so only the loop differs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from contract import datasets, keras_cnn
from contract.checkpoint import WEIGHTS_FILE
from contract.files import atomic_path
from contract.names import TRAINER_FRAMEWORK
from contract.spec import CNNSpec
from train import data, initial, keras_distribute, record
from train.config import TrainConfig
from train.keras_match import TorchAdam, WarmupCosine

WEIGHTS = WEIGHTS_FILE[TRAINER_FRAMEWORK["keras-tape"]]


# --bf16: bf16 compute with float32 weights; the logits layer stays float32 (keras_cnn).
POLICY = {False: "float32", True: "mixed_bfloat16"}


def pick_device(requested: str) -> str:
    for gpu in tf.config.list_physical_devices("GPU"):
        # Else TensorFlow takes the whole GPU at once and leaves torch, in this process, none.
        with contextlib.suppress(RuntimeError):  # set already, by an earlier trainer
            tf.config.experimental.set_memory_growth(gpu, True)
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "cuda" and not gpus:
        raise SystemExit(f"--device cuda: {no_gpu()}; use --device cpu or auto")
    return "/GPU:0" if gpus and requested != "cpu" else "/CPU:0"


def no_gpu() -> str:
    """Why TensorFlow sees no GPU, as far as it can tell."""
    if not tf.test.is_built_with_cuda():
        return (
            f"TensorFlow {tf.__version__} sees no GPU: it is a CPU-only build (tensorflow-cpu); "
            "`make setup GPU=1` installs TensorFlow with its CUDA wheels"
        )
    return f"TensorFlow {tf.__version__} (built with CUDA) sees no GPU (does nvidia-smi?)"


def check_flags(cfg: TrainConfig, device: str) -> None:
    """What --bf16 needs of this machine, checked before any work (as train/torch_loop.py)."""
    if not (cfg.bf16 and device.startswith("/GPU")):
        return
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    if details.get("compute_capability", (0, 0)) < (8, 0):
        raise SystemExit(
            f"--bf16: {details.get('device_name', 'this GPU')} has no bfloat16 arithmetic "
            "(compute capability 8.0 or newer); drop the flag"
        )


def determinism(on: bool) -> None:
    """Op determinism, on for every run but --compile's: XLA has no deterministic MaxPool
    gradient (UnimplementedError, on the CPU too) and Keras turns XLA off while it is on.
    XLA on the CPU repeats itself without it (tested); on a GPU that is not promised."""
    from tensorflow.python.framework import config  # the public API can only switch it on

    (config.enable_op_determinism if on else config.disable_op_determinism)()


def build(
    cfg: TrainConfig, splits: datasets.Splits, spec: CNNSpec
) -> tuple[keras.Model, Path, list[dict]]:
    """Model + optimiser + loss, compiled so that model.save keeps the optimiser state."""
    determinism(not cfg.compile)
    model = keras_cnn.build(spec, cfg.seed, POLICY[cfg.bf16])
    init = initial.start_keras(model, spec, cfg.init, cfg.seed)  # torch's init, by default
    steps_per_epoch = -(-len(splits.train.labels) // cfg.batch_size)
    schedule = WarmupCosine(
        cfg.lr, steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs
    )  # train/schedule.py's, as the torch loop follows it
    # torch.optim.Adam's update (train/keras_match.py)
    optimizer = TorchAdam(learning_rate=schedule, epsilon=cfg.adam_eps)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # jit_compile set either way: Keras' "auto" would XLA-compile model.fit on a GPU only.
    model.compile(optimizer=optimizer, loss=loss_fn, metrics=["accuracy"], jit_compile=cfg.compile)
    run_dir, history = record.start(cfg, spec, splits, init)
    if history:  # resume: the checkpoint's weights replace the init
        model = resume(run_dir / WEIGHTS, cfg)
    if model.jit_compile != cfg.compile:  # Keras turns XLA off, with a warning, where it can't
        raise SystemExit("--compile: Keras cannot XLA-compile this model here; drop the flag")
    return model, run_dir, history


def resume(path: Path, cfg: TrainConfig) -> keras.Model:
    """The saved model with its optimiser state, compiled as this run asks."""
    model = keras.models.load_model(path)
    policy = keras_cnn.convs(model)[0].dtype_policy.name
    if policy != POLICY[cfg.bf16]:
        raise SystemExit(
            f"cannot resume {path.parent}: it was trained with the {policy} policy, this run "
            f"asks for {POLICY[cfg.bf16]} (--bf16 is {'on' if cfg.bf16 else 'off'}); "
            "resume with the flags it started with, or drop --resume"
        )
    model.jit_compile = cfg.compile
    return model


def train(
    cfg: TrainConfig, splits: datasets.Splits, spec: CNNSpec, on_step: Callable | None = None
) -> dict:
    cfg = data.resolve(cfg, splits.train)  # the settings left to the data
    strategy = keras_distribute.strategy(cfg)  # None for one device; first: it sets TF up
    keras.utils.set_random_seed(cfg.seed)
    device = pick_device(cfg.device)
    check_flags(cfg, device)
    with keras_distribute.placed(strategy, device):
        model, run_dir, history = keras_distribute.build(strategy, build, cfg, splits, spec)

        # As model.fit: one trace for every batch size, XLA-compiled under --compile.
        @tf.function(reduce_retracing=True, jit_compile=model.jit_compile)
        def one_step(images, labels):
            return train_step(model, images, labels)

        def step_fn(images, labels, batch_size):  # on one device the part is the batch
            return one_step(images, labels)

        if strategy:  # each replica its part of the global batch
            step_fn = keras_distribute.step_function(strategy, model)
        part = keras_distribute.local_part(strategy)  # what this process reads of each batch
        on_step = on_step or (lambda model: None)
        on_step(model)  # before the first step
        for epoch in range(len(history), cfg.last_epoch()):
            started = time.perf_counter()
            reseed(model, cfg.seed, epoch)
            loss, accuracy, seen = train_epoch(
                cfg, model, step_fn, splits.train, epoch, on_step, part
            )
            calibrate(cfg, model, splits.train, epoch)
            val = evaluate(model, splits.val)
            record.end_epoch(cfg, history, epoch, loss, accuracy, val, seen, started)
            save(run_dir, model)
        test = evaluate(model, splits.test)
    return record.finish(cfg, history, test, device)


def reseed(model: keras.Model, seed: int, epoch: int) -> None:
    """Dropout masks depend only on (seed, epoch): a resumed run equals an unbroken one.
    (A saved .keras file does not keep the dropout layers' seed-generator state.)"""
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    for i, layer in enumerate(drops):
        if layer.rate == 0:  # --dropout 0: Keras gives the layer no seed generator
            continue
        state = layer.seed_generator.state
        state.assign(np.array([seed * 100_003 + epoch * 101 + i, 0], dtype=state.dtype))


def train_epoch(
    cfg: TrainConfig,
    model: keras.Model,
    step_fn: Callable,
    split: datasets.Dataset,
    epoch: int,
    on_step: Callable,
    part: tuple[int, int, int] = (0, 1, 1),
) -> tuple[float, float, int]:
    total_loss = 0.0
    total_correct = 0
    seen = 0
    order = data.batches(len(split.labels), cfg.batch_size, cfg.seed, epoch)
    if cfg.max_steps:
        order = order[: cfg.max_steps]
    # this process's replicas' part of every batch (all of it on one device), read ahead
    batches = data.stream(split, order, cfg.augment, cfg.seed, epoch, part)
    bar = tqdm(
        batches, total=len(order), desc=f"[{cfg.trainer}] epoch {epoch + 1}", disable=cfg.quiet
    )
    for batch, (images, labels) in zip(order, bar, strict=True):
        loss, logits = step_fn(images, labels, len(batch))
        on_step(model)
        labels = split.labels[batch]  # the global batch's, as the logits are
        total_loss += float(loss) * len(labels)
        total_correct += int((np.argmax(logits, 1) == labels).sum())
        seen += len(labels)
    return total_loss / seen, total_correct / seen, seen


def train_step(model: keras.Model, images: tf.Tensor, labels: tf.Tensor) -> tuple:
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = model.loss(labels, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss, logits


def calibrate(cfg: TrainConfig, model: keras.Model, split: datasets.Dataset, epoch: int) -> None:
    """BatchNorm's moving statistics set to their average over cfg.bn_batches training
    batches under the epoch's final weights, as the torch loop's `calibrate` (Keras'
    momentum is the old value's weight: 1 - 1/k at the k-th batch, a plain mean)."""
    order = data.calibration_batches(cfg, split, epoch)
    if not order:
        return
    norms = keras_cnn.norms(model)
    was = [norm.momentum for norm in norms]
    for k, (images, _) in enumerate(data.stream(split, order, "none", cfg.seed, epoch), 1):
        for norm in norms:
            norm.momentum = 1.0 - 1.0 / k
        model(images, training=True)  # eager: each layer reads its momentum now
    for norm, momentum in zip(norms, was, strict=True):
        norm.momentum = momentum


def evaluate(model: keras.Model, split: datasets.Dataset) -> tuple[float, float]:
    model = keras_distribute.one_device(model)  # itself, unless trained under a strategy
    logits = np.concatenate([model.predict_on_batch(images) for images, _ in data.chunks(split)])
    loss = float(model.loss(split.labels, logits))
    return loss, float((logits.argmax(1) == split.labels).mean())


def save(run_dir: Path, model: keras.Model) -> None:
    with atomic_path(run_dir / WEIGHTS) as tmp:
        model.save(tmp)
