# ruff: noqa: E501  (the malformed cases read as a table: one request per line)
"""KServe V2 gRPC, live beside HTTP: tritonclient.grpc unchanged on every variant (logits
equal to the harness's), readiness, batching and metrics shared with HTTP, and malformed
requests answered with a status code and a message while the server keeps serving."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from serve_live import VARIANTS, Live, infer, seeded
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

import harness
from serve import grpc_api, metrics, v2
from serve.batching import QueueFull

pytestmark = pytest.mark.slow  # needs the exported repository and live servers
BATCH = 7
LIMIT_MB = 1
INFLIGHT_MB = 0.5  # a single message between the two limits is over the in-flight cap
MODEL = "torch.onnx"
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def live(serve_root, tmp_path_factory):
    log = tmp_path_factory.mktemp("grpc") / "server.log"
    golden = str(serve_root / "golden.npz")
    limits = ["--max-body-mb", str(LIMIT_MB), "--max-inflight-mb", str(INFLIGHT_MB)]
    server = Live(serve_root / "repo", "--golden", golden, *limits, log=log, grpc=True)
    with server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return triton.InferenceServerClient(live.target)


@pytest.fixture(scope="module")
def stub(live):
    with grpc.insecure_channel(live.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def local(serve_root):
    """The same variants in this process: what the server must reproduce."""
    return {name: harness.load(serve_root / "repo" / name, threads=1) for name in VARIANTS}


def test_health_metadata_and_index(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "tandem" and "classification" in meta.extensions
    index = client.get_model_repository_index().models
    assert sorted(row.name for row in index) == sorted(VARIANTS)
    assert {row.state for row in index} == {"READY"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_ready_and_metadata(client, variant):
    assert client.is_model_ready(variant) and client.is_model_ready(variant, "1")
    meta = client.get_model_metadata(variant, "1")
    assert meta.name == variant and list(meta.versions) == ["1"]
    [tensor] = meta.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("images", "FP32", [-1, 8, 8, 1])
    [tensor] = meta.outputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("logits", "FP32", [-1, 10])


@pytest.mark.parametrize("variant", VARIANTS)
def test_served_logits_equal_harness(client, local, variant):
    x = seeded(seed=len(variant))
    logits = infer(client, variant, x).as_numpy("logits")
    assert logits.dtype == np.float32 and logits.shape == (BATCH, 10)
    np.testing.assert_array_equal(logits, local[variant].predict(x), err_msg=variant)


def request(x: np.ndarray | None = None, model: str = MODEL, **fields) -> pb.ModelInferRequest:
    """A ModelInferRequest for `x` as raw_input_contents; `fields` replace its parts."""
    x = np.ones((1, 8, 8, 1), np.float32) if x is None else x
    tensor = {"name": "images", "datatype": "FP32", "shape": list(x.shape)}
    message = {"model_name": model, "inputs": [tensor], "raw_input_contents": [x.tobytes()]}
    for key, value in fields.items():
        if key in ("name", "datatype", "shape", "contents"):
            tensor[key] = value
        else:
            message[key] = value
    inputs = [
        pb.ModelInferRequest.InferInputTensor(**t) if isinstance(t, dict) else t
        for t in message.pop("inputs")
    ]
    return pb.ModelInferRequest(inputs=inputs, **message)


def test_fp32_contents_and_version(stub, local):
    x = seeded(3, seed=5)
    contents = pb.InferTensorContents(fp32_contents=x.ravel().tolist())
    answer = stub.ModelInfer(
        request(x, raw_input_contents=[], contents=contents, model_version="1")
    )
    assert answer.model_version == "1" and answer.outputs[0].datatype == "FP32"
    logits = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(3, 10)
    np.testing.assert_array_equal(logits, local[MODEL].predict(x))


def test_classification_extension(client, local):
    x = seeded(3)
    result = infer(client, MODEL, x, k=3, request_id="req-1", model_version="1")
    assert result.get_response().id == "req-1"
    rows = result.as_numpy("logits")
    assert rows.shape == (3, 3)
    for row, want in zip(rows, local[MODEL].classify(x, k=3), strict=True):
        parts = [item.decode().split(":") for item in row]
        assert [(int(p[1]), p[2]) for p in parts] == [(w["index"], w["label"]) for w in want]
        assert float(parts[0][0]) == pytest.approx(want[0]["probability"], abs=1e-6)


NAN = np.ones((1, 8, 8, 1), np.float32)
NAN[0, 3, 3, 0] = np.nan
ONE = np.ones((1, 8, 8, 1), np.float32)
INT = pb.InferTensorContents(int_contents=[1] * 64)
TWO = [
    pb.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=[1, 8, 8, 1])
] * 2
CLASSIFY_11 = [
    pb.ModelInferRequest.InferRequestedOutputTensor(
        name="logits", parameters={"classification": pb.InferParameter(int64_param=11)}
    )
]
CLASSIFY_TEXT = [
    pb.ModelInferRequest.InferRequestedOutputTensor(
        name="logits", parameters={"classification": pb.InferParameter(string_param="3")}
    )
]
PROBS = [pb.ModelInferRequest.InferRequestedOutputTensor(name="probs")]

# (id, request, code, words the message must contain)
CASES = [
    ("wrong-input-name", request(name="x"), Code.INVALID_ARGUMENT, "unknown input"),
    ("dtype-fp64", request(ONE.astype(np.float64), datatype="FP64"), Code.INVALID_ARGUMENT, "datatype"),
    ("dtype-int32", request(datatype="INT32", raw_input_contents=[], contents=INT), Code.INVALID_ARGUMENT, "datatype"),
    ("shape-empty", request(shape=[]), Code.INVALID_ARGUMENT, "shape must be a list"),
    ("shape-negative", request(shape=[-1, 8, 8, 1]), Code.INVALID_ARGUMENT, "non-negative"),
    ("shape-rgb", request(np.ones((1, 8, 8, 3), np.float32)), Code.INVALID_ARGUMENT, "[N, 8, 8, 1]"),
    ("shape-nchw", request(np.ones((1, 1, 8, 8), np.float32)), Code.INVALID_ARGUMENT, "NHWC"),
    ("batch-zero", request(np.ones((0, 8, 8, 1), np.float32)), Code.INVALID_ARGUMENT, "N >= 1"),
    ("bytes-short", request(raw_input_contents=[ONE.tobytes()[:-4]]), Code.INVALID_ARGUMENT, "252 bytes in raw_input_contents"),
    ("bytes-shape-mismatch", request(shape=[2, 8, 8, 1]), Code.INVALID_ARGUMENT, "needs 512"),
    ("values-mismatch", request(raw_input_contents=[], contents=pb.InferTensorContents(fp32_contents=[1.0] * 63)), Code.INVALID_ARGUMENT, "63 values in contents.fp32_contents"),
    ("raw-nan", request(NAN), Code.INVALID_ARGUMENT, "NaN or Inf"),
    ("contents-inf", request(raw_input_contents=[], contents=pb.InferTensorContents(fp32_contents=[float("inf")] * 64)), Code.INVALID_ARGUMENT, "NaN or Inf"),
    ("pixels-normalised", request(ONE * 300), Code.INVALID_ARGUMENT, "outside 0..255"),
    ("pixels-negative", request(-ONE), Code.INVALID_ARGUMENT, "outside 0..255"),
    ("no-inputs", request(inputs=[], raw_input_contents=[]), Code.INVALID_ARGUMENT, "one input"),
    ("two-inputs", request(inputs=TWO, raw_input_contents=[ONE.tobytes()] * 2), Code.INVALID_ARGUMENT, "one input"),
    ("two-raw-contents", request(raw_input_contents=[ONE.tobytes()] * 2), Code.INVALID_ARGUMENT, "raw_input_contents must hold 1"),
    ("raw-and-contents", request(contents=pb.InferTensorContents(fp32_contents=[1.0] * 64)), Code.INVALID_ARGUMENT, "both contents and raw"),
    ("no-data", request(raw_input_contents=[]), Code.INVALID_ARGUMENT, "neither raw_input_contents"),
    ("wrong-contents-field", request(raw_input_contents=[], contents=INT), Code.INVALID_ARGUMENT, "contents.int_contents"),
    ("unknown-output", request(outputs=PROBS), Code.INVALID_ARGUMENT, "unknown output"),
    ("classification-too-big", request(outputs=CLASSIFY_11), Code.INVALID_ARGUMENT, "classification"),
    ("classification-string", request(outputs=CLASSIFY_TEXT), Code.INVALID_ARGUMENT, "classification"),
    ("unknown-model", request(model="nope"), Code.NOT_FOUND, "unknown model"),
    ("unknown-version", request(model_version="2"), Code.NOT_FOUND, "serves version 1, not '2'"),
    ("over-limit", request(np.ones((LIMIT_MB * 2**20 // 256 + 1, 8, 8, 1), np.float32)), Code.RESOURCE_EXHAUSTED, "larger than max"),
    ("over-inflight", request(np.ones((int(INFLIGHT_MB * 2**20) // 256 + 1, 8, 8, 1), np.float32)), Code.UNAVAILABLE, "bytes of requests in flight"),
]  # fmt: skip


@pytest.mark.parametrize("message, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request_gets_a_status_naming_the_problem(stub, message, code, words):
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(message, timeout=30)
    assert e.value.code() == code, e.value.details()
    assert words in e.value.details(), e.value.details()


@pytest.mark.parametrize(
    "error, code",
    [
        (v2.ProtocolError("bad"), Code.INVALID_ARGUMENT),
        (v2.ProtocolError("gone", 404), Code.NOT_FOUND),
        (v2.ProtocolError("big", 413), Code.RESOURCE_EXHAUSTED),
        (v2.ProtocolError("loading", 503), Code.UNAVAILABLE),
        (harness.ContractError("shape"), Code.INVALID_ARGUMENT),
        (QueueFull("full"), Code.UNAVAILABLE),
        (RuntimeError("runtime"), Code.INTERNAL),
    ],
    ids=["400", "404", "413", "503", "contract", "queue-full", "runtime"],
)
def test_errors_map_to_the_http_status_and_its_code(error, code):
    assert grpc_api.code_of(metrics.status_of(error)) == code


def test_tritonclient_sees_the_status(client):
    with pytest.raises(triton.InferenceServerException, match="unknown model") as e:
        infer(client, "nope", seeded(1))
    assert e.value.status() == "StatusCode.NOT_FOUND"
    tensor = triton.InferInput("images", [1, 8, 8, 1], "FP64")
    tensor.set_data_from_numpy(np.ones((1, 8, 8, 1), np.float64))
    with pytest.raises(triton.InferenceServerException, match="datatype 'FP64'") as e:
        client.infer(MODEL, [tensor])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    for call in (lambda: client.is_model_ready("nope"), lambda: client.get_model_metadata("nope")):
        with pytest.raises(triton.InferenceServerException, match="unknown model"):
            call()


def test_unimplemented_methods_say_so_without_a_traceback(live, client, stub):
    with pytest.raises(triton.InferenceServerException, match="ModelConfig is not") as e:
        client.get_model_config(MODEL)
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    with pytest.raises(grpc.RpcError) as e:
        list(stub.ModelStreamInfer(iter([request()]), timeout=30))
    assert e.value.code() == Code.UNIMPLEMENTED and "ModelStreamInfer" in e.value.details()
    assert "Traceback" not in live.log.read_text()


def test_concurrent_requests_share_the_batcher_and_statistics(live, stub, local):
    """Concurrent gRPC requests go through the model's batcher (its statistics count their
    images and runtime calls, the same numbers HTTP reports) and each answer equals the
    same request computed alone (ONNX Runtime: bit-identical at any batch size). How many
    merge depends on timing: calls under 1 ms run on the event loop, and grpc.aio hands
    the server one call per loop turn, so those seldom do."""
    requests = [seeded(n, seed=100 + i) for i, n in enumerate([1, 2, 7, 1, 3] * 8)]
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL)).model_stats[0]

    async def burst():
        async with grpc.aio.insecure_channel(live.target) as channel:
            aio = pb_grpc.GRPCInferenceServiceStub(channel)
            return await asyncio.gather(*(aio.ModelInfer(request(x)) for x in requests))

    answers = asyncio.run(burst())
    after = stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL)).model_stats[0]
    assert after.inference_count - before.inference_count == sum(len(x) for x in requests)
    assert 0 < after.execution_count - before.execution_count <= len(requests)
    for x, answer in zip(requests, answers, strict=True):
        logits = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(len(x), 10)
        np.testing.assert_array_equal(logits, local[MODEL].predict(x))
    http = httpx.get(f"{live.url}/v2/models/{MODEL}/stats").json()["model_stats"][0]
    assert (http["inference_count"], http["execution_count"]) == (
        after.inference_count,
        after.execution_count,
    )


def test_metrics_and_still_serving_after_abuse(live, client):
    """After the malformed cases: errors counted under protocol grpc, server ready."""
    assert client.is_server_live() and client.is_server_ready()
    assert infer(client, MODEL, seeded(1)).as_numpy("logits").shape == (1, 10)
    assert live.get("/v2/health/ready")[0] == 200
    samples = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(httpx.get(f"{live.url}/metrics").text)
        for s in family.samples
    ]

    def value(sample: str, **labels: str) -> float:
        return sum(v for n, ls, v in samples if n == sample and labels.items() <= ls.items())

    assert value("tandem_requests_total", model=MODEL, protocol="grpc") >= 20
    assert value("tandem_requests_total", model="_none", protocol="grpc") >= 1  # unknown model
    assert value("tandem_request_errors_total", model=MODEL, code="400") >= 20
    stats = client.get_inference_statistics(MODEL).model_stats[0].inference_stats
    assert stats.fail.count >= 20
