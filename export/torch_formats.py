"""Formats PyTorch writes: `torchscript` (torch.jit.trace), `pt2` (an AOTInductor package),
`onnx` (the dynamo exporter) and `pte` (an ExecuTorch program, XNNPACK-delegated).

Each exporter takes a Source and the artifact path and returns extra manifest fields.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from contract.names import INPUT_NAME, OUTPUT_NAME
from export import onnx_file
from export.source import Source, example_images

ONNX_OPSET = 20  # torch 2.13's default; onnxruntime 1.32 and onnxruntime-web 1.30 run it
# ExecuTorch plans its memory for the largest input, so its batch needs an upper bound
# (a 1024-image input is 256 KiB at 8x8x1); the host runner splits larger batches.
PTE_MAX_BATCH = 1024


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


def quiet_torchao() -> None:
    """ExecuTorch imports torchao, which logs a warning for each optional CUDA kernel library
    it cannot load: noise on a CPU machine."""
    logging.getLogger("torchao").setLevel(logging.ERROR)


def exported_program(source: Source, max_batch: int | None = None):
    """torch.export of the eval-mode net with a dynamic batch (traced at batch 2)."""
    import torch

    images = torch.from_numpy(example_images(source.spec))
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's pytree internals
        return torch.export.export(source.torch_net, (images,), dynamic_shapes=({0: batch},))


def pt2(source: Source, path: Path) -> dict:
    """AOTInductor: the graph compiled to a shared library for this machine's CPU, packaged
    with its weights; torch._inductor.aoti_load_package runs it (no Python graph, no jit)."""
    import torch._inductor

    program = exported_program(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return {"device": "cpu"}


def pte(source: Source, path: Path) -> dict:
    """torch.export -> edge dialect with the XNNPACK partitioner -> ExecuTorch program."""
    quiet_torchao()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = exported_program(source, PTE_MAX_BATCH)
    exported_ranges = dict(program.range_constraints)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        restore_batch_range(edge.exported_program(), exported_ranges)
        path.write_bytes(edge.to_executorch().buffer)
    return {"delegate": "XnnpackBackend", "max_batch": PTE_MAX_BATCH}


def restore_batch_range(program, exported_ranges: dict) -> None:
    """The XNNPACK lowering narrows the batch symbol's range to [2, 15] (in the shape
    environment, and for some input shapes in the program's range_constraints too); memory
    planning reads it, so without this the .pte refuses batches over 15. Put back the
    range the program was exported with."""
    import torch

    for node in program.graph_module.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" else None
        if not isinstance(value, torch.Tensor) or not value.dim():
            continue
        if not isinstance(value.shape[0], torch.SymInt):
            continue
        symbol = value.shape[0].node
        exported = exported_ranges[symbol.expr]
        symbol.shape_env.var_to_range[symbol.expr] = exported
        program.range_constraints[symbol.expr] = exported
