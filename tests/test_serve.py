"""The server, live on loopback, against real clients: tritonclient (binary and JSON),
TF Serving REST, image upload, dynamic batching, metrics, unload and load. A variant that
cannot serve: tests/test_serve_repository.py; 3-channel variants: tests/test_serve_rgb.py."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from pages import digit_file
from prometheus_client.parser import text_string_to_metric_families
from serve_live import VARIANTS, Live, infer, seeded

import harness
from serve import images

pytestmark = pytest.mark.slow  # trains and exports a repository, starts servers
BATCH = 7
TOKEN = "test-serve-control-token-0123456789"
CONTROL = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def root(serve_root):
    return serve_root


@pytest.fixture(scope="module")
def live(root, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    control = ("--model-control", "explicit", "--control-token", TOKEN)
    server = Live(root / "repo", "--golden", str(root / "golden.npz"), *control, log=log)
    with server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return triton.InferenceServerClient(live.url.removeprefix("http://"), concurrency=4)


@pytest.fixture(scope="module")
def local(root):
    """The same variants in this process: what the server must reproduce."""
    return {name: harness.load(root / "repo" / name, threads=1) for name in VARIANTS}


def test_server_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "tandem"
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    index = client.get_model_repository_index()
    assert sorted(row["name"] for row in index) == sorted(VARIANTS)
    assert {row["state"] for row in index} == {"READY"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_metadata_and_ready(client, root, variant):
    assert client.is_model_ready(variant) and client.is_model_ready(variant, "1")
    meta = client.get_model_metadata(variant, "1")
    assert meta["name"] == variant and meta["versions"] == ["1"]
    # the runtime config.pbtxt names: its platform, or (TFLite) its backend, as Triton says
    config = (root / "repo" / variant / "config.pbtxt").read_text()
    named = dict(re.findall(r'^(platform|backend): "(.+)"', config, re.M))
    assert meta["platform"] == named.get("platform", named.get("backend")), config
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_config(variant)["max_batch_size"] == 64


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_served_logits_equal_harness(client, local, variant, binary):
    x = seeded(seed=len(variant))
    result = infer(client, variant, x, binary)
    logits = result.as_numpy("logits")
    assert logits.dtype == np.float32 and logits.shape == (BATCH, 10)
    np.testing.assert_array_equal(logits, local[variant].predict(x), err_msg=variant)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classification_extension(client, local, binary):
    x = seeded(3)
    result = infer(client, "torch.onnx", x, binary, k=3, request_id="req-1", model_version="1")
    assert result.get_response()["id"] == "req-1"
    rows = result.as_numpy("logits")
    assert rows.shape == (3, 3)
    expected = local["torch.onnx"].classify(x, k=3)
    for row, want in zip(rows, expected, strict=True):
        parts = [(item.decode() if binary else item).split(":") for item in row]
        assert [p[2] for p in parts] == [w["label"] for w in want]
        assert [int(p[1]) for p in parts] == [w["index"] for w in want]
        assert float(parts[0][0]) == pytest.approx(want[0]["probability"], abs=1e-6)


def test_compressed_request(client, local):
    x = seeded(2)
    for algorithm in ("gzip", "deflate"):
        tensor = triton.InferInput("images", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("torch.onnx", [tensor], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("logits"), local["torch.onnx"].predict(x))


def test_tfserving(live, local):
    x = seeded(3)
    want = local["torch.tflite"].predict(x)
    status = httpx.get(f"{live.url}/v1/models/torch.tflite").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    meta = httpx.get(f"{live.url}/v1/models/torch.tflite/metadata").json()
    assert (
        "images" in meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    )
    bodies = {
        "predictions": [
            {"instances": x.tolist()},
            {"instances": [{"images": image} for image in x.tolist()]},
        ],
        "outputs": [{"inputs": x.tolist()}, {"inputs": {"images": x.tolist()}}],
    }
    for key, requests in bodies.items():
        for path in ("torch.tflite:predict", "torch.tflite/versions/1:predict"):
            for body in requests:
                r = httpx.post(f"{live.url}/v1/models/{path}", json=body)
                assert r.status_code == 200, r.text
                np.testing.assert_array_equal(np.float32(r.json()[key]), want)


def test_upload_every_variant(live, local):
    data = digit_file(5)
    r = httpx.post(f"{live.url}/classify", files={"image": ("d.png", data)}, data={"k": "2"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert sorted(row["model"] for row in answer["results"]) == sorted(VARIANTS)
    image = images.decode(data, (8, 8, 1))
    for row in answer["results"]:
        want = local[row["model"]].classify(image, k=2)[0]
        assert [t["label"] for t in row["top"]] == [w["label"] for w in want], (row, want)
        assert row["top"][0]["probability"] == pytest.approx(want[0]["probability"], abs=1e-6)
    want = local["torch.onnx"].classify(image, k=1)[0][0]["label"]
    assert answer["agree"] and answer["top1"] == want


def test_upload_one_variant_jpeg(live, local):
    data = digit_file(11, "JPEG")
    r = httpx.post(f"{live.url}/classify/torch.onnx", files={"image": ("d.jpg", data)})
    assert r.status_code == 200, r.text
    [row] = r.json()["results"]
    want = local["torch.onnx"].classify(images.decode(data, (8, 8, 1)), k=3)[0]
    assert [t["label"] for t in row["top"]] == [w["label"] for w in want]


def stats(client, model: str) -> dict:
    return client.get_inference_statistics(model)["model_stats"][0]


# ONNX Runtime and LiteRT give bit-identical rows at any batch size; TorchScript picks
# kernels by batch size, so its rows move by ~1e-6.
@pytest.mark.parametrize("model, atol", [("torch.onnx", 0.0), ("torch.torchscript", 1e-5)])
def test_dynamic_batching_same_answers(live, client, local, model, atol):
    """Many concurrent requests of mixed sizes: merged into fewer runtime calls, and each
    answer equal to the same request computed alone."""
    import aiohttp

    requests = [seeded(n, seed=100 + i) for i, n in enumerate([1, 2, 7, 1, 3] * 12)]
    before = stats(client, model)

    async def send(session, x):
        body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": list(x.shape)}]}
        body["inputs"][0]["data"] = x.ravel().tolist()
        async with session.post(f"{live.url}/v2/models/{model}/infer", json=body) as r:
            assert r.status == 200, await r.text()
            return np.float32((await r.json())["outputs"][0]["data"]).reshape(len(x), 10)

    async def burst():
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(send(session, x) for x in requests))

    answers = asyncio.run(burst())
    after = stats(client, model)
    calls = after["execution_count"] - before["execution_count"]
    served = after["inference_count"] - before["inference_count"]
    assert served == sum(len(x) for x in requests)
    assert calls < len(requests), f"{calls} runtime calls for {len(requests)} requests"
    for x, got in zip(requests, answers, strict=True):
        np.testing.assert_allclose(got, local[model].predict(x), rtol=0, atol=atol)
        assert (got.argmax(1) == local[model].predict(x).argmax(1)).all()


def test_metrics(live, client):
    infer(client, "torch.onnx", seeded(2), True)
    text = httpx.get(f"{live.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, sample: str, **labels) -> float:
        return sum(
            s.value
            for s in families[family].samples
            if s.name == sample and labels.items() <= s.labels.items()
        )

    assert value("tandem_requests", "tandem_requests_total", model="torch.onnx", protocol="v2") >= 1
    assert (
        value(
            "tandem_request_latency_seconds",
            "tandem_request_latency_seconds_count",
            model="torch.onnx",
        )
        >= 1
    )
    assert value("tandem_batch_size", "tandem_batch_size_count", model="torch.onnx") >= 1
    assert value("tandem_model_ready", "tandem_model_ready", model="torch.onnx") == 1.0


def test_unload_and_load_again(client, local):
    """Last in this module: the server is not ready while a variant is unloaded."""
    model = "torch.tflite-fp16"
    client.unload_model(model, headers=CONTROL)
    assert not client.is_model_ready(model) and not client.is_server_ready()
    with pytest.raises(triton.InferenceServerException, match="unloaded"):
        infer(client, model, seeded(1), True)
    client.load_model(model, headers=CONTROL)
    assert client.is_model_ready(model) and client.is_server_ready()
    x = seeded(2)
    np.testing.assert_array_equal(
        infer(client, model, x, True).as_numpy("logits"), local[model].predict(x)
    )
    with pytest.raises(triton.InferenceServerException, match="no variant"):
        client.load_model("nope", headers=CONTROL)
