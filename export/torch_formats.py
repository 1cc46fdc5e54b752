"""Formats PyTorch writes: `torchscript` (torch.jit.trace) and `onnx` (the dynamo exporter).

Each exporter takes a Source and the artifact path and returns extra manifest fields.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from export import onnx_file
from export.source import Source, example_images
from train.config import INPUT_NAME, OUTPUT_NAME

ONNX_OPSET = 20  # torch 2.13's default; onnxruntime 1.32 and onnxruntime-web 1.30 run it


def torchscript(source: Source, path: Path) -> dict:
    import torch

    images = torch.from_numpy(example_images(source.spec))
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated in favour of torch.export, but Triton's libtorch
        # backend and torch.jit.load still need exactly this file.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(source.torch_net, images)
    traced.save(str(path))
    return {}


def onnx(source: Source, path: Path) -> dict:
    import torch

    # The exporter warns once per run about torchvision ops it cannot register;
    # torchvision is not a dependency and the CNN uses none of them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    images = torch.from_numpy(example_images(source.spec))
    with warnings.catch_warnings():
        # torch.export's pytree internals raise a FutureWarning on every export.
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            source.torch_net,
            (images,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
            external_data=False,
            verbose=False,
        )
    return {"opset": onnx_file.save(program.model_proto, path)}
