"""New versions rolled out under load: 16 clients at full rate on three variants while one of
them gets a good version 2, a miscalibrated version 3 and two rollbacks, published into the
repository of a running `python -m serve --model-control poll`.

No request fails, every answer names a version that passed its checks, version 3 never
answers, and the switch time and the memory of two loaded versions are printed. Then the
version routes of every protocol: the live version answers, the others are 404 / NOT_FOUND.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc
from serve_live import Live, infer, rss_mib, seeded, subset

from contract import checkpoint
from export import versions
from export.matrix import export_variant
from export.source import Source

pytestmark = pytest.mark.slow
ROLLED = "torch.onnx-int8"
STEADY = ("torch.onnx", "torch.tflite")
CLIENTS = 16
POLL_S = 0.2


def binary_request() -> tuple[bytes, dict]:
    images = seeded(2)
    tensor = {"name": "images", "shape": [2, 8, 8, 1], "datatype": "FP32"}
    header = {
        "inputs": [tensor | {"parameters": {"binary_data_size": images.nbytes}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    text = json.dumps(header).encode()
    return text + images.tobytes(), {"Inference-Header-Content-Length": str(len(text))}


class Load:
    """CLIENTS threads, each on its own kept-alive connection, half of them on ROLLED:
    every answer as (monotonic time, variant, status, model_version)."""

    def __init__(self, port: int) -> None:
        self.port, self.stop = port, threading.Event()
        self.answers: list[tuple[float, str, int, str]] = []
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(CLIENTS)]

    def client(self, i: int) -> None:
        name = ROLLED if i % 2 == 0 else STEADY[(i // 2) % len(STEADY)]
        body, headers = binary_request()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.is_set():
            conn.request("POST", f"/v2/models/{name}/infer", body, headers)
            response = conn.getresponse()
            data = response.read()
            length = response.getheader("Inference-Header-Content-Length")
            head = json.loads(data[: int(length)] if length else data)
            version = head.get("model_version", head.get("error", ""))
            self.answers.append((time.monotonic(), name, response.status, version))
        conn.close()

    def first(self, version: str, after: float) -> float | None:
        """When ROLLED first answered from `version` after `after`."""
        found = [t for t, n, _, v in list(self.answers) if n == ROLLED and v == version]
        return next((t for t in found if t > after), None)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


class Memory(threading.Thread):
    """The server's resident memory (with its workers), sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.samples.append((time.monotonic(), rss_mib(self.pid)))


def wait_for(what, timeout: float = 90.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(step)
    raise TimeoutError("waited too long")


def publish(checkpoints: Path, repo: Path, scale: float = 1.0) -> float:
    """Export ROLLED again from the same checkpoint (calibrated on images x `scale`: a
    wrong scale is a correctly signed, badly quantized version); returns when it is
    published."""
    source = Source(checkpoint.find("torch", checkpoints), repo / ".tmp-rollout-source")
    if scale != 1.0:
        source.calibration_images = source.calibration_images * np.float32(scale)
    try:
        export_variant(source, "onnx-int8", repo)
    finally:
        source.close()
    return time.monotonic()


@pytest.fixture(scope="module")
def server(serve_root, digits_repo, tmp_path_factory):
    repo = subset(
        serve_root / "repo", tmp_path_factory.mktemp("rollout") / "repo", [ROLLED, *STEADY]
    )
    flags = ["--golden", str(serve_root / "golden.npz"), "--model-control", "poll"]
    flags += ["--poll-interval-s", str(POLL_S)]
    log = repo.parent / "serve.log"
    with Live(repo, *flags, log=log, grpc=True) as live:
        yield live, repo, digits_repo[0]


def test_rollout_and_rollback_under_load_fail_no_request(server, capsys):
    live, repo, checkpoints = server
    meta = lambda: live.get(f"/v2/models/{ROLLED}")[1]  # noqa: E731
    memory = Memory(live.proc.pid)
    memory.start()
    with Load(live.port) as load:
        time.sleep(1.0)
        calm = float(np.median([m for _, m in memory.samples]))
        published = publish(checkpoints, repo)  # version 2: the same model, re-exported
        switched = wait_for(lambda: load.first("2", published))
        promoted = wait_for(lambda: meta()["live_version"] == "2" and time.monotonic())
        published_bad = publish(checkpoints, repo, scale=1 / 255)  # version 3: calibrated on 0..1
        refused = wait_for(lambda: meta().get("refused"))
        time.sleep(0.5)
        versions.rollback(repo, ROLLED)  # on disk 3 -> 2: the server already serves 2
        wait_for(lambda: "refused" not in meta())
        rolled = versions.rollback(repo, ROLLED, "1")[1]
        back = wait_for(lambda: load.first("1", published_bad))
        time.sleep(0.5)
    memory.done.set()
    statuses = Counter(status for _, _, status, _ in load.answers)
    answered = Counter((name, version) for _, name, _, version in load.answers)
    assert statuses == {200: len(load.answers)}, (statuses, Counter(load.answers).most_common(3))
    assert {v for n, v in answered if n == ROLLED} == {"1", "2"}  # 3 never answered
    assert {v for n, v in answered if n in STEADY} == {"1"}
    assert rolled == "1" and back
    assert refused["version"] == "3"
    assert refused["reason"].startswith("golden replay (int8 profile): ")
    log = live.log.read_text()
    assert re.search(rf"{ROLLED}: version 3 refused, version 2 keeps serving: golden replay", log)
    assert "Traceback" not in log
    metrics = urllib_text(live.url + "/metrics")
    assert f'tandem_model_rollouts_total{{model="{ROLLED}",outcome="refused"}} 1.0' in metrics
    assert f'tandem_model_rollouts_total{{model="{ROLLED}",outcome="promoted"}} 2.0' in metrics
    assert f'tandem_model_version{{model="{ROLLED}"}} 1.0' in metrics
    peak = max(m for t, m in memory.samples if published <= t <= promoted)
    with capsys.disabled():
        print(
            f"\n[rollout] {len(load.answers)} answers, 0 failed, from {CLIENTS} clients; "
            f"publish to first answer from version 2: {switched - published:.2f} s "
            f"(poll every {POLL_S} s); server memory {calm:.0f} MiB, "
            f"{peak - calm:+.1f} MiB while two versions were loaded"
        )


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def test_only_the_live_version_answers_on_every_protocol(server):
    live, _, _ = server
    status, meta = live.get(f"/v2/models/{ROLLED}")
    current, held = meta["live_version"], meta["repository_versions"]
    assert status == 200 and meta["versions"] == [current] and current in held
    other = next(v for v in ["1", "2", "3", "4"] if v != current)
    assert live.get(f"/v2/models/{ROLLED}/versions/{current}/ready")[0] == 200
    status, body = live.get(f"/v2/models/{ROLLED}/versions/{other}")
    assert status == 404
    assert f"serves version {current}, not '{other}'" in body["error"]
    assert "make rollback" in body["error"]
    x = seeded(3)
    client = tritonclient.grpc.InferenceServerClient(live.target)
    answer = infer(client, ROLLED, x, model_version=current)
    assert answer.get_response().model_version == current
    with pytest.raises(tritonclient.grpc.InferenceServerException) as e:
        infer(client, ROLLED, x, model_version=other)
    assert e.value.status() == str(grpc.StatusCode.NOT_FOUND)
    request = {"instances": x.tolist()}
    status, _ = post(live, f"/v1/models/{ROLLED}/versions/{current}:predict", request)
    assert status == 200
    status, body = post(live, f"/v1/models/{ROLLED}/versions/{other}:predict", request)
    assert status == 404 and f"not '{other}'" in body["error"]
    status, body = live.get(f"/v1/models/{ROLLED}")
    assert body["model_version_status"][0]["version"] == current


def post(live: Live, path: str, payload: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(live.url + path, data=json.dumps(payload).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
