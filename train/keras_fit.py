"""Trainer `keras-fit`: Keras `model.fit` over the very batches the loops use.

The model, optimiser, evaluation and checkpoint come from train/keras_tape.py, so the only
difference from the GradientTape loop is who runs the loop: here Keras, with a
PyDataset for the batches and a callback for the per-epoch log, record and checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import keras
from tqdm import tqdm

from contract import datasets
from contract.spec import CNNSpec
from train import data, keras_distribute, record
from train.config import TrainConfig
from train.keras_tape import build, calibrate, check_flags, evaluate, pick_device, reseed, save


class EpochBatches(keras.utils.PyDataset):
    """The same shuffled batches as the loops (data.batches), one epoch at a time."""

    def __init__(self, cfg: TrainConfig, split: datasets.Dataset) -> None:
        super().__init__()
        self.cfg, self.split = cfg, split
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Called by EndEpoch.on_epoch_begin: Keras' own on_epoch_end count is off by one
        (it also fires after peeking at the first batch)."""
        order = data.batches(len(self.split.labels), self.cfg.batch_size, self.cfg.seed, epoch)
        self.order = order[: self.cfg.max_steps] if self.cfg.max_steps else order
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int):
        """Step i's batch, augmented as the loops' (data.stream reads the same)."""
        cfg = self.cfg
        return data.load_batch(self.split, self.order[i], cfg.augment, cfg.seed, self.epoch, i)


class EndEpoch(keras.callbacks.Callback):
    """Log, record and checkpoint after each epoch exactly as the loops do."""

    def __init__(
        self,
        cfg: TrainConfig,
        history: list[dict],
        run_dir: Path,
        split: datasets.Dataset,
        batches: EpochBatches,
        on_step: Callable,
    ) -> None:
        super().__init__()
        self.cfg, self.history, self.run_dir = cfg, history, run_dir
        self.split, self.batches, self.on_step = split, batches, on_step

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        reseed(self.model, self.cfg.seed, epoch)
        self.batches.set_epoch(epoch)
        desc = f"[{self.cfg.trainer}] epoch {epoch + 1}"
        self.bar = tqdm(total=len(self.batches), desc=desc, disable=self.cfg.quiet)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        self.on_step(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
        seen = sum(len(i) for i in self.batches.order)
        calibrate(self.cfg, self.model, self.batches.split, epoch)
        val = evaluate(self.model, self.split)
        record.end_epoch(
            self.cfg, self.history, epoch, logs["loss"], logs["accuracy"], val, seen, self.started
        )
        save(self.run_dir, self.model)


def train(
    cfg: TrainConfig, splits: datasets.Splits, spec: CNNSpec, on_step: Callable | None = None
) -> dict:
    cfg = data.resolve(cfg, splits.train)  # the settings left to the data
    strategy = keras_distribute.strategy(cfg)  # None for one device; first: it sets TF up
    keras.utils.set_random_seed(cfg.seed)
    device = pick_device(cfg.device)
    check_flags(cfg, device)
    with keras_distribute.placed(strategy, device):  # model.fit splits each batch itself
        model, run_dir, history = keras_distribute.build(strategy, build, cfg, splits, spec)
        on_step = on_step or (lambda model: None)
        on_step(model)  # before the first step
        batches = EpochBatches(cfg, splits.train)
        end_epoch = EndEpoch(cfg, history, run_dir, splits.val, batches, on_step)
        model.fit(
            batches,
            epochs=cfg.last_epoch(),
            initial_epoch=len(history),
            callbacks=[end_epoch],
            shuffle=False,  # EpochBatches already shuffles, by (seed, epoch)
            verbose=0,  # EndEpoch draws the same tqdm bar and log line as the loops
        )
        test = evaluate(model, splits.test)
    return record.finish(cfg, history, test, device)
