"""The torch trainer under torchrun: DistributedDataParallel, one process per device.

    torchrun --standalone --nproc-per-node 2 -m train --trainer torch     # one host
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 --rdzv-id RUN -m train --trainer torch  # on each host

What makes N processes train the model one process would (docs/distributed.md):
- Every step takes the same global batch as one process, `data.batches(...)[step]`, and
  each rank its contiguous part (train/cluster.py:shard).
- The loss: each rank's mean, times its share of the batch times the number of ranks. DDP
  averages the gradients over ranks, so the update is the global batch's mean gradient,
  also when the last batch of an epoch splits unevenly (41 images: 21 and 20).
- BatchNorm normalises with the global batch's statistics (`GlobalBatchNorm`).
- Only rank 0 writes (train/cluster.py:own_output); the checkpoint holds the plain
  model's state_dict, the same file a single process writes, and `--resume` loads it on
  every rank.
"""

from __future__ import annotations

import datetime
import os
import warnings

import torch
import torch.distributed as dist
from torch import nn

from train.cluster import Process

# A rank that waits this long for the others gives up with an error naming the collective,
# instead of hanging (torchrun also stops every rank once one of them dies).
TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("TANDEM_DIST_TIMEOUT_S", 120)))
BACKEND = {"cpu": "gloo", "cuda": "nccl"}


def start(me: Process, device: torch.device) -> torch.device:
    """Join the process group (gloo on the CPU, nccl on CUDA); this rank's device."""
    if me.size == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", me.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(BACKEND[device.type], timeout=TIMEOUT)
    return device


def stop(me: Process) -> None:
    if me.size > 1:
        dist.barrier()  # no rank leaves before rank 0 has written its last files
        dist.destroy_process_group()


class SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: each rank's part of a sum gets the gradient of every
    rank's use of the sum, summed (torch.distributed.nn.functional.all_reduce, deprecated in
    torch 2.13 in favour of a private module)."""

    @staticmethod
    def forward(ctx, part: torch.Tensor) -> torch.Tensor:
        total = part.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are the global batch's, all ranks together,
    so N ranks normalise as one process does. torch.nn.SyncBatchNorm does the same with
    CUDA-only kernels (torch 2.13 has no CPU ones: gloo runs fail); this sums over ranks
    with SumOverRanks, on every device, so the path CI tests is the one GPUs run.
    Its state_dict is BatchNorm2d's; eval mode is BatchNorm2d's own code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        axes = (0, 2, 3)  # (N, C, H, W): one statistic per channel
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        dist.all_reduce(count)
        mean = SumOverRanks.apply(x.sum(axes)) / count
        centred = x - mean[None, :, None, None]
        var = SumOverRanks.apply(centred.square().sum(axes)) / count  # biased, as torch's
        with torch.no_grad():  # running_var from the unbiased variance, as torch's
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def global_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d of module replaced by a GlobalBatchNorm holding its state."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm):
            norm = GlobalBatchNorm(child.num_features, child.eps, child.momentum)
            norm.load_state_dict(child.state_dict())
            setattr(module, name, norm.to(child.weight.device))
        else:
            global_batch_norm(child)
    return module


def wrap(net: nn.Module, me: Process, device: torch.device) -> nn.Module:
    """net itself for one process; else net with GlobalBatchNorm inside DDP (which starts
    every rank from rank 0's weights)."""
    if me.size == 1:
        return net
    global_batch_norm(net)
    ids = [device.index] if device.type == "cuda" else None
    # The model permutes NHWC input to NCHW, so conv weight gradients come channels_last
    # strided; DDP copies them into its buckets, which is correct, and warns once per rank.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # The buffers (BN running statistics) stay equal on every rank: no sync per step.
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False)


def loss_weight(part: int, total: int, me: Process) -> float:
    """Factor on this rank's mean loss so that DDP's average of the ranks' gradients is the
    global batch's mean gradient: part * size / total (exactly 1.0 for equal parts)."""
    return part * me.size / total


def all_sum(value: torch.Tensor, me: Process) -> torch.Tensor:
    """The sum over ranks (epoch totals for the log line); value itself for one process."""
    if me.size > 1:
        dist.all_reduce(value)
    return value
