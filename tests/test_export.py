"""The export stage's artifacts: every variant through its own runtime at every batch
size, manifests, Triton configs, ONNX checks (publishing and the CLI: test_export_publish.py).

Real checkpoints (the `make train` digits models and quick 3-channel 16x16 models), each
exported once per session (tests/conftest.py); no mocks.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from contract import checkpoint
from contract.formats import FORMAT_NAMES, FORMATS
from contract.names import TRAINERS, variant_name
from export import repository, triton_config
from export.onnx_file import MAX_IR_VERSION
from export.repository import MANIFEST_FILE
from harness.verdict import FAIL, PROFILES, judge

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 2, 7, 64)
DATASETS = ("digits", "rgb")
VARIANTS = [(d, t, f) for d in DATASETS for t in TRAINERS for f in FORMAT_NAMES]
ONNX_FORMATS = tuple(n for n, f in FORMATS.items() if f.artifact.endswith(".onnx"))


def ids(cases):
    return [f"{d}-{variant_name(t, f)}" for d, t, f in cases]


@pytest.fixture(scope="module")
def repos(digits_repo, rgb_repo) -> dict[str, tuple[Path, Path]]:
    """{dataset: (checkpoint root, repository root)}: every trainer x format, exported once
    per session (tests/conftest.py) and shared with the parity tests."""
    return {"digits": digits_repo, "rgb": rgb_repo}


@cache
def reference(ckpt_root: Path, trainer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64 real test images, their labels and the logits of the eager model in the framework
    it was trained in, so cross-framework variants are held to the original."""
    ckpt = checkpoint.find(trainer, ckpt_root)
    test = ckpt.splits().test
    images, labels = test.images[: max(BATCHES)], test.labels[: max(BATCHES)]
    if ckpt.framework == "torch":
        import torch

        with torch.no_grad():
            logits = checkpoint.load_torch(ckpt)(torch.from_numpy(images)).numpy()
    else:
        logits = checkpoint.load_keras(ckpt).predict_on_batch(images)
    return images, labels, np.asarray(logits)


# One runner per runtime: (artifact path, batches) -> logits per batch.
def run_torchscript(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    module = torch.jit.load(str(path))
    with torch.no_grad():
        return [module(torch.from_numpy(x)).numpy() for x in batches]


def run_pt2(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import torch
    import torch._inductor

    model = torch._inductor.aoti_load_package(str(path))
    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in batches]


def run_pte(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import torch
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(path))
    method = program.load_method("forward")
    return [method.execute([torch.from_numpy(x)])[0].numpy().copy() for x in batches]


def run_onnx(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    return [session.run(["logits"], {"images": x})[0] for x in batches]


def run_savedmodel(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return [serve(images=tf.constant(x))["logits"].numpy() for x in batches]


def run_tflite(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    signature = interpreter.get_signature_list()["serving_default"]
    assert (signature["inputs"], signature["outputs"]) == (["images"], ["logits"])
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape_signature"][:1]) == [-1], "batch dimension must be dynamic"
    logits = []
    for x in batches:
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        logits.append(interpreter.get_tensor(out["index"]).copy())
    return logits


RUNTIMES = {
    "torchscript": run_torchscript,
    "pt2": run_pt2,
    "onnx": run_onnx,
    "onnx-tf": run_onnx,
    "onnx-fp16": run_onnx,
    "onnx-int8": run_onnx,
    "savedmodel": run_savedmodel,
    "tflite": run_tflite,
    "tflite-fp16": run_tflite,
    "tflite-int8": run_tflite,
    "pte": run_pte,
}


def folder(repo: Path, trainer: str, fmt: str) -> Path:
    """A variant's folder: in the model repository, or the edge root beside it."""
    root = repository.home(fmt, repo, repository.edge_beside(repo))
    return root / variant_name(trainer, fmt)


def check_close(
    name: str, precision: str, got: list[np.ndarray], want: np.ndarray, labels: np.ndarray
) -> None:
    """Every batch size gives the contract's shape and dtype, the same rows as the largest
    batch, and the parity verdict of the format's profile is not a fail."""
    full = got[-1]
    for logits in got:
        n = len(logits)
        assert logits.shape == (n, want.shape[1]), f"{name} batch {n}: shape {logits.shape}"
        assert logits.dtype == np.float32, f"{name} batch {n}: dtype {logits.dtype}"
        assert np.isfinite(logits).all(), f"{name} batch {n}: non-finite logits"
        diff = float(np.abs(logits - full[:n]).max())
        assert diff <= PROFILES["fp32"].max_abs_diff, f"{name}: batch {n} vs {len(full)}: {diff}"
    result = judge(want[: len(full)], full, labels[: len(full)], precision)
    assert result["verdict"] != FAIL, f"{name}: {result['reason']}"
    if precision == "fp32":  # exact profile: every row within its bound, same top-1
        assert result["verdict"] == "pass", f"{name}: {result['reason']}"


@pytest.mark.parametrize(("dataset", "trainer", "fmt"), VARIANTS, ids=ids(VARIANTS))
def test_runtime_matches_eager(repos, dataset, trainer, fmt):
    ckpt_root, repo = repos[dataset]
    name = variant_name(trainer, fmt)
    images, labels, want = reference(ckpt_root, trainer)
    variant = folder(repo, trainer, fmt)
    artifact = repository.artifact(variant, repository.read_manifest(variant))
    got = RUNTIMES[fmt](artifact, [images[:n] for n in BATCHES])
    check_close(name, FORMATS[fmt].precision, got, want, labels)


@pytest.mark.parametrize(("dataset", "trainer", "fmt"), VARIANTS, ids=ids(VARIANTS))
def test_manifest(repos, dataset, trainer, fmt):
    ckpt_root, repo = repos[dataset]
    name = variant_name(trainer, fmt)
    manifest = repository.verify(folder(repo, trainer, fmt))  # every sha256, none unlisted
    ckpt = checkpoint.find(trainer, ckpt_root)
    spec = ckpt.spec
    assert (manifest["name"], manifest["trainer"], manifest["format"]) == (name, trainer, fmt)
    assert manifest["precision"] == FORMATS[fmt].precision
    side = spec.image_size
    assert manifest["input"] == {
        "name": "images",
        "datatype": "FP32",
        "shape": [-1, side, side, spec.channels],
    }
    assert manifest["output"] == {
        "name": "logits",
        "datatype": "FP32",
        "shape": [-1, spec.num_classes],
    }
    assert manifest["labels"] == ckpt.labels
    assert manifest["spec"] == json.loads(json.dumps(spec.to_dict()))
    assert manifest["normalization"]["inside_graph"] is True
    assert manifest["source_checkpoint"]["sha256"] == repository.sha256_file(ckpt.weights)
    assert "python" in manifest["versions"]
    assert ("opset" in manifest) == (fmt in ONNX_FORMATS)
    files = manifest["files"]
    assert repository.LABELS_FILE in files
    assert (repository.CONFIG_FILE in files) == (fmt in TRITON_RUNTIME)
    live = manifest["version"]
    assert manifest["artifact"] == f"{live}/{FORMATS[fmt].artifact}"
    assert any(f == manifest["artifact"] or f.startswith(manifest["artifact"] + "/") for f in files)
    record = manifest["model_versions"][live]  # the version's own record: files and run
    assert set(record["files"]) == {f for f in files if f.startswith(f"{live}/")}
    assert record["run"]["seed"] == ckpt.recorded["seed"]
    assert record["run"]["init_sha256"] == ckpt.recorded["init"]["sha256"]
    assert 0 <= record["run"]["metrics"]["test_accuracy"] <= 1
    assert datetime.fromisoformat(manifest["created"]).utcoffset().total_seconds() == 0


# Triton's runtime for each format: `platform` (built in) or `backend` (TFLite's).
TRITON_RUNTIME = {
    name: ("platform", f.triton_platform) if f.triton_platform else ("backend", f.triton_backend)
    for name, f in FORMATS.items()
    if not f.edge
}
TRITON = [v for v in VARIANTS if v[2] in TRITON_RUNTIME]


def tensor_names(folder: Path, manifest: dict) -> dict[str, str]:
    """The names the runtime knows the tensors by: the contract's, except inside a .tflite
    file, where Triton's TFLite backend looks them up by the converter's names."""
    if FORMATS[manifest["format"]].triton_platform:
        return {side: manifest[side]["name"] for side in ("input", "output")}
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(repository.artifact(folder, manifest)))
    (images,), (logits,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {"input": images["name"], "output": logits["name"]}


@pytest.mark.parametrize(("dataset", "trainer", "fmt"), TRITON, ids=ids(TRITON))
def test_config_pbtxt_parses_as_triton_model_config(repos, dataset, trainer, fmt):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    variant = folder(repos[dataset][1], trainer, fmt)
    manifest = json.loads((variant / MANIFEST_FILE).read_text())
    config = text_format.Parse(
        (variant / repository.CONFIG_FILE).read_text(), model_config_pb2.ModelConfig()
    )
    assert config.name == variant.name
    assert config.version_policy.latest.num_versions == 1  # said, not left to the default
    field, runtime = TRITON_RUNTIME[fmt]
    assert getattr(config, field) == runtime
    fp32 = model_config_pb2.DataType.Value("TYPE_FP32")
    if fmt == "pt2":  # Triton addresses PT2 tensors by position and does not batch them yet
        assert config.backend == "pytorch" and config.max_batch_size == 0
        assert not config.HasField("dynamic_batching")
        cpu = model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert [group.kind for group in config.instance_group] == [cpu]  # device-baked
        names = dict(zip(("input", "output"), triton_config.PT2_TENSORS, strict=True))
        expected = {side: (names[side], manifest[side]["shape"]) for side in names}
    else:  # batch excluded from the dims when Triton batches
        assert not getattr(config, "backend" if field == "platform" else "platform")
        assert config.max_batch_size == repository.MAX_BATCH_SIZE
        assert config.HasField("dynamic_batching")
        names = tensor_names(variant, manifest)
        sides = ("input", "output")
        expected = {side: (names[side], manifest[side]["shape"][1:]) for side in sides}
    for side, tensors in (("input", config.input), ("output", config.output)):
        (tensor,) = tensors
        assert (tensor.name, list(tensor.dims)) == expected[side]
        assert tensor.data_type == fp32
    sizes = [1] if fmt == "pt2" else [1, repository.MAX_BATCH_SIZE]  # a full one if batched
    assert [w.batch_size for w in config.model_warmup] == sizes
    image = (variant / triton_config.WARMUP_DIR / triton_config.WARMUP_FILE).read_bytes()
    (shape,) = {tuple(w.inputs[config.input[0].name].dims) for w in config.model_warmup}
    assert shape[-3:] == tuple(manifest["input"]["shape"][1:])
    assert len(image) == 4 * int(np.prod(shape))
    pixels = np.frombuffer(image, "<f4")
    assert pixels.min() >= 0 and pixels.max() <= 255 and pixels.std() > 0  # an image, not zeros


ONNX = [v for v in VARIANTS if v[2] in ONNX_FORMATS]


@pytest.mark.parametrize(("dataset", "trainer", "fmt"), ONNX, ids=ids(ONNX))
def test_onnx_passes_checker_with_browser_ir_version(repos, dataset, trainer, fmt):
    import onnx

    variant = folder(repos[dataset][1], trainer, fmt)
    model = onnx.load(str(repository.artifact(variant, repository.read_manifest(variant))))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= MAX_IR_VERSION
    opsets = {o.domain: o.version for o in model.opset_import}
    assert json.loads((variant / MANIFEST_FILE).read_text())["opset"] == opsets.get("", 0)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value"), "batch must be symbolic"
    # The quantized files hold what their names say, behind float32 input and output.
    fp32, fp16, int8 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8
    graph = model.graph
    assert [t.type.tensor_type.elem_type for t in (*graph.input, *graph.output)] == [fp32, fp32]
    kernels = [i for i in graph.initializer if len(i.dims) == 4 and i.dims[0] > 1]
    weights = {i.data_type for i in kernels}
    assert weights == {dict(fp32=fp32, fp16=fp16, int8=int8)[FORMATS[fmt].precision]}
