"""Who this process is in a distributed run, and where it writes. No framework imported.

Two engines start the processes, each with its own convention:
- torchrun (the `torch` trainer) sets RANK, WORLD_SIZE and LOCAL_RANK per process;
- a cluster manager, or `python -m train.multiworker` on one host, sets TF_CONFIG per
  worker for tf.distribute.MultiWorkerMirroredStrategy (the `keras-tape` trainer).

Every process trains; only the chief (rank 0, worker 0) writes the run folder. The others
run the same code against a temporary folder that is deleted at the end, the Keras
multi-worker convention, so the loops and their files stay the same for one process or many.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.names import TRAINER_FRAMEWORK
from train.config import TrainConfig

# keras-team/keras#20585: model.fit under MultiWorkerMirroredStrategy fails with
# "Attempt to convert a value (PerReplica...) to a Tensor" (Keras 3.15, TF 2.21).
# Recheck when Keras is upgraded.
FIT_MULTIWORKER_ISSUE = "https://github.com/keras-team/keras/issues/20585"
# model.fit under MirroredStrategy builds the model from the mean of its first batch's
# replica parts (Trainer._maybe_symbolic_build), which fails when their sizes differ:
# "Inputs to operation AddN ... must have the same size and shape" (as in keras#19246).
FIT_UNEVEN_ISSUE = "https://github.com/keras-team/keras/issues/19246"
# The temporary run folders of the processes other than the chief: <tmp>/tandem-rank<r>-*
WORKER_DIR_PREFIX = "tandem-rank"


@dataclass(frozen=True)
class Process:
    """This process's place in the job: rank in 0..size-1; rank 0 is the chief."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # index on its host: torchrun's LOCAL_RANK picks the GPU

    @property
    def chief(self) -> bool:
        return self.rank == 0


def torchrun_process() -> Process:
    """From torchrun's environment; one process of one when it did not start this one."""
    env = os.environ
    return Process(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


def tf_config_process() -> Process:
    """From TF_CONFIG ({"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker",
    "index": i}}); one process of one without it. A "chief" task, where the cluster has one,
    is rank 0 and the workers follow it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return Process()
    config = json.loads(raw)
    cluster, task = config.get("cluster", {}), config.get("task", {})
    chiefs = len(cluster.get("chief", []))
    size = chiefs + len(cluster.get("worker", []))
    if task.get("type") not in ("chief", "worker"):
        raise SystemExit(
            f"TF_CONFIG task type {task.get('type')!r}: only chief and worker tasks train here"
        )
    rank = int(task.get("index", 0)) + (chiefs if task["type"] == "worker" else 0)
    return Process(rank, size, 0)


def process(trainer: str) -> Process:
    """This process as the engine of its trainer's framework sees it."""
    return torchrun_process() if TRAINER_FRAMEWORK[trainer] == "torch" else tf_config_process()


def refused(cfg: TrainConfig, trainers: list[str]) -> str:
    """Why this job cannot run these trainers as started; empty when it can. Each engine
    runs its own trainers: a process started by the other one would train alone, silently."""
    reasons = []
    for trainer in trainers:
        torch_side = TRAINER_FRAMEWORK[trainer] == "torch"
        if torch_side and tf_config_process().size > 1:
            reasons.append(f"{trainer} under TF_CONFIG: start it with torchrun")
        if not torch_side and torchrun_process().size > 1:
            reasons.append(f"{trainer} under torchrun: start it under tf.distribute (TF_CONFIG)")
        if torch_side and cfg.replicas > 1:
            reasons.append(
                f"{trainer} with --replicas {cfg.replicas}: run "
                f"`torchrun --nproc-per-node {cfg.replicas} -m train --trainer {trainer}`"
            )
        if not torch_side and cfg.replicas > 1 and tf_config_process().size > 1:
            reasons.append(
                f"{trainer} with --replicas and TF_CONFIG: across workers each one trains on "
                "its host's GPUs (CUDA_VISIBLE_DEVICES), or its CPU; drop --replicas"
            )
        if trainer == "keras-fit" and tf_config_process().size > 1:
            reasons.append(
                "keras-fit across workers (TF_CONFIG): model.fit under "
                f"MultiWorkerMirroredStrategy fails in Keras 3 ({FIT_MULTIWORKER_ISSUE}); "
                "train keras-tape across hosts, or keras-fit with --replicas N on one host"
            )
        several = cfg.replicas > 1 or tf_config_process().size > 1
        if trainer == "keras-tape" and cfg.compile and several:
            reasons.append(
                "keras-tape with --compile on several replicas or workers: its step across "
                "replicas (strategy.run) is not XLA-compiled; drop --compile, or train "
                "keras-fit (--replicas) or one process"
            )
        if trainer == "keras-fit" and cfg.replicas > 1 and cfg.batch_size % cfg.replicas:
            reasons.append(
                f"keras-fit with --batch-size {cfg.batch_size} on {cfg.replicas} replicas: "
                "model.fit fails on a first batch that does not split evenly "
                f"({FIT_UNEVEN_ISSUE}); choose a multiple of {cfg.replicas}"
            )
    return "; ".join(reasons)


def shard(indices: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank's part of one global batch: contiguous, sizes differing by at most one, so the
    parts in rank order are the global batch in its own order."""
    return np.array_split(indices, size)[rank]


def check_batches(order: list[np.ndarray], size: int) -> None:
    """Every step must give every replica at least one image: one with none would have no
    batch statistics and no mean loss."""
    smallest = min(len(idx) for idx in order)
    if smallest < size:
        raise SystemExit(
            f"a step of {smallest} images cannot be split across {size} replicas: choose a "
            f"--batch-size that leaves 0 or at least {size} images for an epoch's last batch"
        )


@contextlib.contextmanager
def own_output(cfg: TrainConfig, me: Process) -> Iterator[TrainConfig]:
    """The chief gets cfg as it is. Any other process gets a copy that writes to a temporary
    folder (holding a copy of the chief's run folder when resuming, which every process
    must be able to read: one host, or a shared file system) and prints nothing."""
    if me.chief:
        yield cfg
        return
    with tempfile.TemporaryDirectory(prefix=f"{WORKER_DIR_PREFIX}{me.rank}-") as tmp:
        mine = dataclasses.replace(cfg, out=Path(tmp), quiet=True)
        if cfg.resume and cfg.run_dir().is_dir():
            shutil.copytree(cfg.run_dir(), mine.run_dir())
        yield mine
