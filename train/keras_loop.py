"""Trainers `keras-tape` (a tf.GradientTape loop, mirror image of train/torch_loop.py)
and `keras-fit` (model.fit over the same batches)."""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from train import data, keras_model, record
from train.config import CNNSpec, TrainConfig

WEIGHTS_FILE = "model.keras"


def pick_device(requested: str) -> str:
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "cuda" and not gpus:
        raise SystemExit("--device cuda: TensorFlow sees no GPU here; use --device cpu or auto")
    return "/GPU:0" if gpus and requested != "cpu" else "/CPU:0"


def build(cfg: TrainConfig, splits: data.Splits, spec: CNNSpec):
    """Model + optimiser + loss, compiled so that model.save keeps the optimiser state."""
    tf.config.experimental.enable_op_determinism()
    model = keras_model.build(spec, cfg.seed)
    steps_per_epoch = -(-len(splits.train.labels) // cfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, steps_per_epoch * cfg.epochs)
    optimizer = keras.optimizers.Adam(learning_rate=schedule, epsilon=cfg.adam_eps)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss_fn, metrics=["accuracy"])
    run_dir, history = record.start(cfg, spec, splits.train.class_names)
    if history:
        model = keras.models.load_model(run_dir / WEIGHTS_FILE)
    return model, run_dir, history


def train(cfg: TrainConfig, splits: data.Splits, spec: CNNSpec) -> dict:
    keras.utils.set_random_seed(cfg.seed)
    device = pick_device(cfg.device)
    with tf.device(device):
        model, run_dir, history = build(cfg, splits, spec)

        @tf.function
        def step_fn(images, labels):
            return train_step(model, images, labels)

        for epoch in range(len(history), cfg.last_epoch()):
            started = time.perf_counter()
            reseed(model, cfg.seed, epoch)
            loss, accuracy, seen = train_epoch(cfg, step_fn, splits.train, epoch)
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
        state = layer.seed_generator.state
        state.assign(np.array([seed * 100_003 + epoch * 101 + i, 0], dtype=state.dtype))


def train_epoch(cfg, step_fn, split: data.Dataset, epoch: int):
    total_loss = 0.0
    total_correct = 0
    seen = 0
    order = data.batches(len(split.labels), cfg.batch_size, cfg.seed, epoch)
    if cfg.max_steps:
        order = order[: cfg.max_steps]
    for idx in tqdm(order, desc=f"[{cfg.trainer}] epoch {epoch + 1}", disable=cfg.quiet):
        labels = split.labels[idx]
        loss, logits = step_fn(split.images[idx], labels)
        total_loss += float(loss) * len(idx)
        total_correct += int((np.argmax(logits, 1) == labels).sum())
        seen += len(idx)
    return total_loss / seen, total_correct / seen, seen


def train_step(model: keras.Model, images, labels):
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = model.loss(labels, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss, logits


def evaluate(model: keras.Model, split: data.Dataset) -> tuple[float, float]:
    logits = np.concatenate(
        [
            model.predict_on_batch(split.images[i : i + 1024])
            for i in range(0, len(split.labels), 1024)
        ]
    )
    loss = float(model.loss(split.labels, logits))
    return loss, float((logits.argmax(1) == split.labels).mean())


def save(run_dir, model: keras.Model) -> None:
    tmp = run_dir / f"tmp-{WEIGHTS_FILE}"  # Keras insists on the .keras suffix
    model.save(tmp)
    tmp.replace(run_dir / WEIGHTS_FILE)


class EpochBatches(keras.utils.PyDataset):
    """The same shuffled batches as the loops (data.batches), one epoch at a time."""

    def __init__(self, cfg: TrainConfig, split: data.Dataset) -> None:
        super().__init__()
        self.cfg, self.split = cfg, split
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Called by EndEpoch.on_epoch_begin: Keras' own on_epoch_end count is off by one
        (it also fires after peeking at the first batch)."""
        order = data.batches(len(self.split.labels), self.cfg.batch_size, self.cfg.seed, epoch)
        self.order = order[: self.cfg.max_steps] if self.cfg.max_steps else order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int):
        idx = self.order[i]
        return self.split.images[idx], self.split.labels[idx]


class EndEpoch(keras.callbacks.Callback):
    """Log, record and checkpoint after each epoch exactly as the loops do."""

    def __init__(self, cfg, history, run_dir, split: data.Dataset, batches: EpochBatches):
        super().__init__()
        self.cfg, self.history, self.run_dir = cfg, history, run_dir
        self.split, self.batches = split, batches

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        reseed(self.model, self.cfg.seed, epoch)
        self.batches.set_epoch(epoch)
        desc = f"[{self.cfg.trainer}] epoch {epoch + 1}"
        self.bar = tqdm(total=len(self.batches), desc=desc, disable=self.cfg.quiet)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
        seen = sum(len(i) for i in self.batches.order)
        val = evaluate(self.model, self.split)
        record.end_epoch(
            self.cfg, self.history, epoch, logs["loss"], logs["accuracy"], val, seen, self.started
        )
        save(self.run_dir, self.model)


def fit(cfg: TrainConfig, splits: data.Splits, spec: CNNSpec) -> dict:
    keras.utils.set_random_seed(cfg.seed)
    device = pick_device(cfg.device)
    with tf.device(device):
        model, run_dir, history = build(cfg, splits, spec)
        batches = EpochBatches(cfg, splits.train)
        model.fit(
            batches,
            epochs=cfg.last_epoch(),
            initial_epoch=len(history),
            callbacks=[EndEpoch(cfg, history, run_dir, splits.val, batches)],
            shuffle=False,  # EpochBatches already shuffles, by (seed, epoch)
            verbose=0,  # EndEpoch draws the same tqdm bar and log line as the loops
        )
        test = evaluate(model, splits.test)
    return record.finish(cfg, history, test, device)
