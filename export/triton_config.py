"""Triton's model config (config.pbtxt) for each format: the runtime it names (its record's
triton_platform / triton_backend, contract/formats.py), the tensors, the batch.
`repository.write_metadata` writes it into each variant folder.

This module imports no ML framework (a TFLite variant's tensor names are read with LiteRT,
imported then).
"""

from __future__ import annotations

from pathlib import Path

from contract.formats import FORMATS
from contract.names import INPUT_NAME, LABELS_FILE, OUTPUT_NAME
from contract.spec import CNNSpec

# The most images one request (and one dynamic batch) may carry: config.pbtxt's
# max_batch_size, recorded in each manifest; the server batches up to it by default.
MAX_BATCH_SIZE = 64


def config_pbtxt(
    name: str, fmt: str, spec: CNNSpec, tensors: tuple[str, str] = (INPUT_NAME, OUTPUT_NAME)
) -> str:
    """Triton's model config; with max_batch_size > 0 the dims exclude the batch.
    `tensors`: the (input, output) names the runtime knows them by."""
    if fmt == "pt2":
        return pt2_config_pbtxt(name, spec)
    side, channels = spec.image_size, spec.channels
    record = FORMATS[fmt]
    runtime = (
        f'platform: "{record.triton_platform}"'
        if record.triton_platform
        else f'backend: "{record.triton_backend}"'
    )
    return (
        f'name: "{name}"\n'
        f"{runtime}\n"
        f"max_batch_size: {MAX_BATCH_SIZE}\n"
        "input [\n"
        "  {\n"
        f'    name: "{tensors[0]}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: [ {side}, {side}, {channels} ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{tensors[1]}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: [ {spec.num_classes} ]\n"
        f'    label_filename: "{LABELS_FILE}"\n'
        "  }\n"
        "]\n"
        "dynamic_batching { }\n"
    )


# Triton's PyTorch backend loads a PT2 package with platform "torch_aoti" (26.03 and later).
# It addresses tensors by position, and it does not batch PT2 models yet: max_batch_size 0,
# so the dims carry the package's own dynamic batch (-1) and each request is one call.
PT2_TENSORS = ("INPUT__0", "OUTPUT__0")


def pt2_config_pbtxt(name: str, spec: CNNSpec) -> str:
    side, channels = spec.image_size, spec.channels
    inp, out = PT2_TENSORS
    record = FORMATS["pt2"]
    return (
        f'name: "{name}"\n'
        f'backend: "{record.triton_backend}"\n'
        f'platform: "{record.triton_platform}"\n'
        "max_batch_size: 0\n"
        "input [\n"
        "  {\n"
        f'    name: "{inp}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: [ -1, {side}, {side}, {channels} ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{out}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: [ -1, {spec.num_classes} ]\n"
        f'    label_filename: "{LABELS_FILE}"\n'
        "  }\n"
        "]\n"
        "instance_group [ { kind: KIND_CPU } ]\n"
    )


def tflite_tensor_names(path: Path) -> tuple[str, str]:
    """(input, output) tensor names inside a .tflite file. Triton's TFLite backend binds the
    config's tensors by these (the converter's, e.g. `serving_default_images:0`)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (images,), (logits,) = interpreter.get_input_details(), interpreter.get_output_details()
    return images["name"], logits["name"]
