"""What every ONNX file in the repository goes through, whichever exporter made it."""

from __future__ import annotations

from pathlib import Path

# onnxruntime-web 1.30 rejects IR version 14, onnx 1.23's default.
MAX_IR_VERSION = 13


def save(model, path: Path) -> int:
    """Cap the IR version, run the full checker, write one self-contained file; return
    the default-domain opset for the manifest."""
    import onnx

    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path), save_as_external_data=False)
    return opset(model)


def opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if len(versions) != 1:
        raise ValueError(f"expected one default-domain opset, found {versions}")
    return versions[0]


def rename_output(model, name: str) -> None:
    """Rename the graph's single output (and every reference to it) to `name`."""
    if len(model.graph.output) != 1:
        raise ValueError(f"expected one graph output, found {len(model.graph.output)}")
    old = model.graph.output[0].name
    if old == name:
        return
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    model.graph.output[0].name = name
