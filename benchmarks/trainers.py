"""The trainers section: images/s of each trainer on one synthetic workload, and on a CUDA
GPU the torch trainer beside a ceiling measured in the same run.

CPU: `python -m train --trainer all` on synthetic 32x32x3 images, the figure of its last
(warm) epoch, as metrics.json records it (the epoch's images over its wall time, validation
included). CUDA (only where torch sees a GPU): the torch trainer in fp32 and in
bf16+channels_last, each also with `--compile --fused-adam`, at batch 1024, beside the fastest plain
step of the same CNN and batch: data on the device, fused Adam, bf16 autocast +
channels_last, the model under `torch.compile`, the step replayed as a CUDA graph. Each
reported as a ratio to that ceiling (goal >= 0.9).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract.names import TRAINERS
from contract.spec import CNNSpec

IMAGE_SIZE, CHANNELS, CLASSES = 32, 3, 10


def workload(quick: bool, cuda: bool = False) -> dict:
    if cuda:
        return {"samples": 50_000, "batch_size": 1024, "epochs": 2 if quick else 3}
    return {"samples": 1024 if quick else 2048, "batch_size": 64 if quick else 128, "epochs": 2}


def train_run(work: dict, out: Path, trainer: str, *flags: str, max_steps: int = 0) -> dict:
    """One `python -m train` run; {trainer: images/s of its last epoch}."""
    cmd = [sys.executable, "-m", "train", "--trainer", trainer, "--data", "synthetic"]
    cmd += ["--image-size", str(IMAGE_SIZE), "--channels", str(CHANNELS)]
    cmd += ["--synthetic-samples", str(work["samples"]), "--batch-size", str(work["batch_size"])]
    cmd += ["--epochs", str(work["epochs"]), "--max-steps", str(max_steps)]
    cmd += ["--out", str(out), "--quiet", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    trainers = TRAINERS if trainer == "all" else (trainer,)
    figures = {}
    for name in trainers:
        epochs = json.loads((out / name / "metrics.json").read_text())["epochs"]
        figures[name] = round(epochs[-1]["images_per_s"], 1)
    return figures


def cpu_section(quick: bool) -> dict:
    work = workload(quick)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        figures = train_run(work, Path(out), "all", "--device", "cpu", max_steps=6 if quick else 0)
    return {
        "device": "cpu",
        "workload": work | {"image": [IMAGE_SIZE, IMAGE_SIZE, CHANNELS], "data": "synthetic"},
        "images_per_s": figures,
        "seconds": round(time.perf_counter() - started, 1),
    }


def ceiling(batch: int, bf16: bool, steps: int) -> tuple[float, str]:
    """images/s of the fastest plain training step of the one CNN at `batch` we can write."""
    import torch

    from contract import torch_cnn  # the build imports torch: only on a CUDA host

    device = torch.device("cuda")
    spec = CNNSpec.for_data(IMAGE_SIZE, CHANNELS, CLASSES)
    net = torch_cnn.build(spec).to(device).to(memory_format=torch.channels_last)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True, capturable=True)
    model = torch.compile(net)
    images = torch.rand(batch, IMAGE_SIZE, IMAGE_SIZE, CHANNELS, device=device) * 255
    labels = torch.randint(0, CLASSES, (batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # graph replays need the same .grad tensors

    side = torch.cuda.Stream()  # warm-up on a side stream, as CUDA graph capture requires
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            step()
    torch.cuda.current_stream().wait_stream(side)
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        run, method = graph.replay, "torch.compile + CUDA graph"
    except RuntimeError:  # a capture this build refuses: the compiled step, launched plainly
        torch.cuda.synchronize()
        run, method = step, "torch.compile"
    for _ in range(10):
        run()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        run()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started), method


def cuda_section(quick: bool) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU"}
    work = workload(quick, cuda=True)
    fast = ("--compile", "--fused-adam")  # the flags that close the gap to the ceiling
    runs = {
        "fp32": (),
        "fp32+compile+fused_adam": fast,
        "bf16+channels_last": ("--bf16", "--channels-last"),
        "bf16+channels_last+compile+fused_adam": ("--bf16", "--channels-last", *fast),
    }
    result: dict = {"device": torch.cuda.get_device_name(), "workload": work, "rows": []}
    ceilings = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        try:
            figure, method = ceiling(work["batch_size"], bf16, 50 if quick else 200)
            ceilings[precision] = round(figure, 1)
            result[f"ceiling_{precision}_method"] = method
        except Exception as e:  # the ceiling's own failure is reported, the trainer still runs
            result[f"ceiling_{precision}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    result["ceiling_images_per_s"] = ceilings
    for name, flags in runs.items():
        with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
            try:
                figure = train_run(work, Path(out), "torch", "--device", "cuda", *flags)["torch"]
            except RuntimeError as e:
                result["rows"].append({"run": name, "error": str(e)[-500:]})
                continue
        top = ceilings.get(name.split("+")[0])
        ratio = round(figure / top, 3) if top else None
        result["rows"].append({"run": name, "images_per_s": figure, "ratio_to_ceiling": ratio})
    return result


def section(quick: bool) -> dict:
    return {"cpu": cpu_section(quick), "cuda": cuda_section(quick)}
