"""Trainer `torch`: a manual PyTorch loop. Mirror image of train/keras_tape.py: the same
functions, in the same order, with the same log line."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from contract import datasets, torch_cnn
from contract.checkpoint import WEIGHTS_FILE
from contract.files import atomic_path
from contract.names import TRAINER_FRAMEWORK
from contract.spec import CNNSpec
from train import cluster, data, distributed, initial, record, schedule
from train.config import TrainConfig

WEIGHTS = WEIGHTS_FILE[TRAINER_FRAMEWORK["torch"]]


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SystemExit(
            f"--device cuda: PyTorch ({torch.__version__}, {build}) sees no CUDA GPU here; "
            "use --device cpu or auto"
        )
    return torch.device(requested)


def check_flags(cfg: TrainConfig, device: torch.device) -> None:
    """What --bf16 and --compile need of this machine, checked before any work."""
    native = device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False)
    if cfg.bf16 and not native:
        raise SystemExit(
            f"--bf16: {torch.cuda.get_device_name(device)} has no bfloat16 arithmetic "
            "(compute capability 8.0 or newer); drop the flag"
        )
    # Inductor writes C++ kernels for the CPU; without a compiler its first step fails deep.
    if cfg.compile and device.type == "cpu" and not any(map(shutil.which, ("g++", "clang++"))):
        raise SystemExit(
            "--compile: torch.compile builds C++ kernels for the CPU and finds no g++ or "
            "clang++; install one (apt-get install g++) or drop the flag"
        )


def train(
    cfg: TrainConfig, splits: datasets.Splits, spec: CNNSpec, on_step: Callable | None = None
) -> dict:
    cfg = data.resolve(cfg, splits.train)  # the settings left to the data
    torch.manual_seed(cfg.seed)
    me = cluster.torchrun_process()  # rank 0 of 1 unless torchrun started this process
    device = distributed.start(me, pick_device(cfg.device))
    check_flags(cfg, device)
    net = torch_cnn.build(spec, cfg.seed)
    init = initial.start_torch(net, cfg.init, cfg.seed)  # the Keras trainers start here too
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = distributed.wrap(net, me, device)  # DDP over the ranks; net itself in one process
    if cfg.compile:  # in place: state_dict keys unchanged; dynamic: one graph for every batch
        model.compile(dynamic=True)
    steps_per_epoch = -(-len(splits.train.labels) // cfg.batch_size)
    # --fused-adam: the same update in one kernel for all parameters (CPU and CUDA)
    fused = {"fused": True} if cfg.fused_adam else {}
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, **fused)
    scheduler = schedule.torch_scheduler(
        optimizer, steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs
    )
    run_dir, history = record.start(cfg, spec, splits, init)
    if history:  # resume: the checkpoint's weights replace the init
        state = torch.load(run_dir / WEIGHTS, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # a checkpoint from CosineAnnealingLR (before the warm-up) has no lambdas' state
        state["scheduler"].setdefault("lr_lambdas", [None] * len(optimizer.param_groups))
        scheduler.load_state_dict(state["scheduler"])
    on_step = on_step or (lambda model: None)
    on_step(net)  # before the first step
    for epoch in range(len(history), cfg.last_epoch()):
        started = time.perf_counter()
        reseed(cfg.seed, epoch, me)
        loss, accuracy, seen = train_epoch(
            cfg, model, optimizer, scheduler, splits.train, epoch, device, on_step, me
        )
        calibrate(cfg, net, splits.train, epoch, device, me)
        val = evaluate(cfg, net, splits.val, device)
        record.end_epoch(cfg, history, epoch, loss, accuracy, val, seen, started)
        save(run_dir, net, optimizer, scheduler)
    test = evaluate(cfg, net, splits.test, device)
    metrics = record.finish(cfg, history, test, str(device))
    distributed.stop(me)
    return metrics


def reseed(seed: int, epoch: int, me: cluster.Process) -> None:
    """Dropout masks depend only on (seed, epoch): a resumed run equals an unbroken one.
    Each rank draws its own (the same seed everywhere would repeat one mask per rank)."""
    torch.manual_seed((seed * 100_003 + epoch) * me.size + me.rank)


def train_epoch(
    cfg: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    split: datasets.Dataset,
    epoch: int,
    device: torch.device,
    on_step: Callable,
    me: cluster.Process,
) -> tuple[float, float, int]:
    model.train()
    total_loss = torch.zeros((), device=device)
    total_correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    order = data.batches(len(split.labels), cfg.batch_size, cfg.seed, epoch)
    if cfg.max_steps:
        order = order[: cfg.max_steps]
    cluster.check_batches(order, me.size)
    # this rank's part of every batch, read ahead (and pinned, for a CUDA copy) in a thread
    part = (me.rank, me.size)
    parts = data.stream(split, order, cfg.augment, cfg.seed, epoch, part, host(device))
    bar = tqdm(
        parts, total=len(order), desc=f"[{cfg.trainer}] epoch {epoch + 1}", disable=cfg.quiet
    )
    for batch, (images, labels) in zip(order, bar, strict=True):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        weight = distributed.loss_weight(len(labels), len(batch), me)
        loss, logits = train_step(cfg, model, optimizer, images, labels, device, weight)
        scheduler.step()
        on_step(getattr(model, "module", model))  # the CNN, not its DDP wrapper
        # Accumulate on device; one sync per epoch instead of one per step.
        total_loss += loss.detach() * len(labels)
        total_correct += (logits.argmax(1) == labels).sum()
        seen += len(batch)
    total_loss, total_correct = (
        distributed.all_sum(total_loss, me),
        distributed.all_sum(total_correct, me),
    )
    return total_loss.item() / seen, total_correct.item() / seen, seen


def train_step(
    cfg: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    # NHWC input permuted to NCHW inside the model already has channels_last strides.
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    (loss * weight).backward()  # weight: distributed.loss_weight; 1.0 (exact) in one process
    optimizer.step()
    return loss, logits


@torch.no_grad()
def calibrate(
    cfg: TrainConfig,
    net: torch.nn.Module,
    split: datasets.Dataset,
    epoch: int,
    device: torch.device,
    me: cluster.Process,
) -> None:
    """BatchNorm's running statistics set to their average over cfg.bn_batches training
    batches under the epoch's final weights (momentum 1/k at the k-th: a plain mean), where
    the moving average lags weights that moved fast. Each rank its part, summed over ranks
    by the global BatchNorm as in training."""
    order = data.calibration_batches(cfg, split, epoch)
    if not order:
        return
    norms = net.norms()
    was = [norm.momentum for norm in norms]
    net.train()
    parts = data.stream(split, order, "none", cfg.seed, epoch, (me.rank, me.size))
    for k, (images, _) in enumerate(parts, 1):
        for norm in norms:
            norm.momentum = 1.0 / k
        net(torch.from_numpy(images).to(device))
    for norm, momentum in zip(norms, was, strict=True):
        norm.momentum = momentum


@torch.no_grad()
def evaluate(
    cfg: TrainConfig, model: torch.nn.Module, split: datasets.Dataset, device: torch.device
) -> tuple[float, float]:
    model.eval()
    logits = []
    # Under --bf16 as trained, as Keras' mixed_bfloat16 policy also predicts in bf16.
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        for images, _ in data.chunks(split):
            logits.append(model(torch.from_numpy(images).to(device)).float())
    logits, labels = torch.cat(logits), torch.from_numpy(split.labels).to(device)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    return loss.item(), (logits.argmax(1) == labels).float().mean().item()


def host(device: torch.device) -> Callable:
    """A batch as tensors, in page-locked memory when it is bound for a CUDA device (so
    the copy can overlap the step)."""

    def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pair = torch.from_numpy(images), torch.from_numpy(labels)
        return tuple(t.pin_memory() for t in pair) if device.type == "cuda" else pair

    return tensors


def save(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    with atomic_path(run_dir / WEIGHTS) as tmp:
        torch.save(state, tmp)
