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
# Triton's model_warmup reads its sample from <variant>/warmup/<file>: one real image
# (float32, row-major, the input's dims), run at batch 1 and at max_batch_size before the
# version takes traffic.
WARMUP_DIR, WARMUP_FILE = "warmup", "image"


def config_pbtxt(
    name: str,
    fmt: str,
    spec: CNNSpec,
    tensors: tuple[str, str] = (INPUT_NAME, OUTPUT_NAME),
    warmup: bool = True,
) -> str:
    """Triton's model config, built as Triton's own ModelConfig message (tritonclient ships
    its protobuf) and written by protobuf's text_format: a field name or value Triton does
    not know fails here, not in Triton. With max_batch_size > 0 the dims exclude the batch.
    `tensors`: the (input, output) names the runtime knows them by. `warmup`: Triton runs
    the image in warmup/ (WARMUP_FILE) through each version before it serves."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    record = FORMATS[fmt]
    side, channels = spec.image_size, spec.channels
    config = pb.ModelConfig(name=name)
    if record.triton_platform:
        config.platform = record.triton_platform
    if record.triton_backend:  # pt2 names both
        config.backend = record.triton_backend
    # Serve the newest version only, as Triton does by default, said in the file (a
    # rollback pins one: `with_version_policy`).
    config.version_policy.latest.num_versions = 1
    if fmt == "pt2":
        # Triton's PyTorch backend loads a PT2 package with platform "torch_aoti" (26.03
        # and later). It addresses tensors by position and does not batch PT2 models yet:
        # max_batch_size 0, so the dims carry the package's own dynamic batch (-1).
        tensors, batch, config.max_batch_size = PT2_TENSORS, [-1], 0
        config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU)
    else:
        batch, config.max_batch_size = [], MAX_BATCH_SIZE
        config.dynamic_batching.SetInParent()
    fp32 = pb.DataType.Value("TYPE_FP32")
    config.input.add(name=tensors[0], data_type=fp32, dims=[*batch, side, side, channels])
    config.output.add(
        name=tensors[1],
        data_type=fp32,
        dims=[*batch, spec.num_classes],
        label_filename=LABELS_FILE,
    )
    # Without batching (pt2), one request of one image; else one image and a full batch.
    for size in [1] if batch else [1, MAX_BATCH_SIZE]:
        if not warmup:
            break
        sample = config.model_warmup.add(name=f"warmup image x{size}", batch_size=size)
        image = sample.inputs[tensors[0]]
        image.data_type, image.input_data_file = fp32, WARMUP_FILE
        image.dims.extend([*([1] if batch else []), side, side, channels])
    return text_format.MessageToString(config)


PT2_TENSORS = ("INPUT__0", "OUTPUT__0")


def with_version_policy(text: str, versions: list[int] | None) -> str:
    """A config.pbtxt's text with its version_policy replaced: `specific` on `versions`,
    or `latest 1` for None. Parsed and written by protobuf, the rest kept as it was."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    config = text_format.Parse(text, pb.ModelConfig())
    config.ClearField("version_policy")
    if versions is None:
        config.version_policy.latest.num_versions = 1
    else:
        config.version_policy.specific.versions.extend(versions)
    return text_format.MessageToString(config)


def tflite_tensor_names(path: Path) -> tuple[str, str]:
    """(input, output) tensor names inside a .tflite file. Triton's TFLite backend binds the
    config's tensors by these (the converter's, e.g. `serving_default_images:0`)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (images,), (logits,) = interpreter.get_input_details(), interpreter.get_output_details()
    return images["name"], logits["name"]
