"""Repository scanning says what it refuses and why: folders without a manifest, manifests
that do not read, symlinks out of a variant, names a route would shadow, a file changed
after export. Each is listed UNAVAILABLE with its reason, logged once, and answered 503;
no answer names a path."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import tritonclient.http as triton
from serve_live import Live, infer, seeded, subset, tamper

from export import repository
from serve import catalog
from serve.app import create_app
from serve.config import ServeConfig

MANIFEST = repository.MANIFEST_FILE
INPUT = {"name": "images", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": [0.0] * 64}
TOKEN = "repository-test-control-token-0123"
CONTROL = {"Authorization": f"Bearer {TOKEN}"}


def fake_variant(root: Path, name: str) -> Path:
    """A variant folder with a signed manifest and a stand-in model file (no runtime)."""
    folder = root / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(b"not really onnx")
    (folder / "labels.txt").write_text("0\n1\n")
    spec = {"name": "images", "datatype": "FP32", "shape": [-1, 8, 8, 1]}
    manifest = {"name": name, "trainer": "torch", "format": "onnx", "input": spec}
    manifest |= {"output": {"name": "logits"}, "labels": ["0", "1"]}
    repository.write_manifest(folder, manifest)
    return folder


def rewrite_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del manifest[key]
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_scan_says_why_it_refuses(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    fake_variant(root, "torch.onnx")
    (fake_variant(root, "no-manifest") / MANIFEST).unlink()
    (fake_variant(root, "bad-json") / MANIFEST).write_text("{not json")
    (fake_variant(root, "a-list") / MANIFEST).write_text("[]")
    rewrite_manifest(fake_variant(root, "no-format"), format=None)
    (fake_variant(root, "rootdir") / "rootdir").symlink_to("/", target_is_directory=True)
    (fake_variant(root, "nested-link") / "1" / "passwd").symlink_to("/etc/passwd")
    (fake_variant(root, "next-door") / "1" / "m").symlink_to(root / "torch.onnx" / "1")
    (fake_variant(root, "loop") / "a").symlink_to("a")
    inside = fake_variant(root, "inside-link")
    (inside / "1" / "alias.onnx").symlink_to("model.onnx")  # stays in the folder: allowed
    fake_variant(tmp_path / "elsewhere", "outside")
    (root / "outside").symlink_to(tmp_path / "elsewhere" / "outside")
    (root / "alias").symlink_to(root / "torch.onnx")  # inside the repository: allowed
    fake_variant(root, "stats")
    fake_variant(root, "bad+name")
    fake_variant(root, ".tmp-torch.onnx-123")  # an export in progress: not a variant yet
    (root / "notes.txt").write_text("a file, not a folder")

    found = catalog.scan(root)
    assert found.pop("torch.onnx") == "" and found.pop("inside-link") == ""
    assert found.pop("alias") == ""  # verify() then refuses its manifest's name
    expect = {
        "no-manifest": "no manifest.json",
        "bad-json": "manifest.json is not valid JSON",
        "a-list": "not a JSON object",
        "no-format": "manifest.json lacks format",
        "rootdir": "rootdir is a symlink that leaves the variant folder",
        "nested-link": "1/passwd is a symlink that leaves the variant folder",
        "next-door": "1/m is a symlink that leaves the variant folder",
        "loop": "a is a symlink",
        "outside": "a symlink to a place outside the repository",
        "stats": "the route /v2/models/stats answers before",
        "bad+name": "characters outside",
    }
    assert sorted(found) == sorted(expect)
    for name, words in expect.items():
        assert words in found[name], (name, found[name])
        assert str(tmp_path) not in found[name]


def test_shadowed_names_cover_the_route_table(tmp_path):
    """Every fixed path segment where a model name goes is refused as a name."""
    app = create_app(ServeConfig(repository=tmp_path)).api
    prefixes = ("/v2/models/", "/v1/models/", "/classify/", "/v2/repository/models/")
    fixed = set()
    for route in app.routes:
        for prefix in prefixes:
            if route.path.startswith(prefix):
                segment = route.path[len(prefix) :].split("/")[0]
                if segment and not segment.startswith("{"):
                    fixed.add(segment)
    assert fixed == set(catalog.SHADOWED)


def test_without_paths_takes_the_repository_out(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    said = f"Load model from {real}/torch.onnx/1/model.onnx failed; {link} is unreadable"
    assert catalog.without_paths(said, link) == (
        "Load model from torch.onnx/1/model.onnx failed; the model repository is unreadable"
    )


# Live: real variants copied, then broken the ways the scan refuses.
BROKEN = {
    "torch.tflite": "no manifest.json",
    "keras-fit.tflite": "manifest.json is not valid JSON",
    "keras-tape.tflite": "manifest.json lacks format",
    "torch.tflite-fp16": "rootdir is a symlink that leaves the variant folder",
    "stats": "the route /v2/models/stats answers before",
    "torch+onnx": "characters outside",
    "keras-fit.onnx": "a symlink to a place outside the repository",
}
SERVED = "torch.onnx"
UNLOADABLE = "keras-tape.onnx"  # signed, but not a model: the runtime's error names its file


@pytest.fixture(scope="module")
def broken(serve_root, tmp_path_factory):
    source = serve_root / "repo"
    tmp = tmp_path_factory.mktemp("scan")
    copies = ["torch.tflite", "keras-fit.tflite", "keras-tape.tflite", "torch.tflite-fp16"]
    repo = subset(source, tmp / "repo", [SERVED, UNLOADABLE, *copies])
    (repo / "torch.tflite" / MANIFEST).unlink()
    (repo / "keras-fit.tflite" / MANIFEST).write_text('{"name": "keras-fit.tflite",')
    rewrite_manifest(repo / "keras-tape.tflite", format=None)
    (repo / "torch.tflite-fp16" / "rootdir").symlink_to("/", target_is_directory=True)
    for name in ("stats", "torch+onnx"):  # whole, signed copies under names that cannot serve
        shutil.copytree(source / SERVED, repo / name)
        rewrite_manifest(repo / name, name=name)
    subset(source, tmp / "elsewhere", ["keras-fit.onnx"])
    (repo / "keras-fit.onnx").symlink_to(tmp / "elsewhere" / "keras-fit.onnx")
    # Signed again after the damage, so only the runtime can tell.
    (repo / UNLOADABLE / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    rewrite_manifest(repo / UNLOADABLE, files=repository.file_hashes(repo / UNLOADABLE))
    (repo / ".tmp-torch.onnx-1").mkdir()
    (tmp / "served").symlink_to(repo)  # the server is given a symlink to the repository
    log = tmp / "server.log"
    flags = ("--golden", "none", "--model-control", "explicit", "--control-token", TOKEN)
    server = Live(tmp / "served", *flags, log=log)
    try:
        server.wait("/v2/health/live")
        for _ in range(300):  # loading runs after start-up; bounded at about a minute
            states = {row["state"] for row in index(server)}
            if "LOADING" not in states:
                break
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


BODIES: list[str] = []  # every answer of the live tests, searched for paths at the end


def call(method: str, url: str, **kw) -> httpx.Response:
    answer = httpx.request(method, url, timeout=60, **kw)
    BODIES.append(answer.text)
    return answer


def index(server: Live) -> list[dict]:
    return call("POST", server.url + "/v2/repository/index").json()


@pytest.mark.slow
def test_refused_folders_are_listed_with_why(broken):
    rows = {row["name"]: row for row in index(broken)}
    assert ".tmp-torch.onnx-1" not in rows
    assert rows[SERVED]["state"] == "READY"
    assert rows[UNLOADABLE]["state"] == "UNAVAILABLE"
    for name, words in BROKEN.items():
        assert rows[name]["state"] == "UNAVAILABLE", rows[name]
        assert words in rows[name]["reason"], rows[name]


@pytest.mark.slow
def test_refused_folders_are_logged_once(broken):
    warnings = [line for line in broken.log.read_text().splitlines() if line.startswith("WARN")]
    for name, words in BROKEN.items():
        said = [line for line in warnings if repr(name) in line]
        assert len(said) == 1 and words in said[0], (name, warnings)
    assert not any(".tmp-" in line for line in warnings)


@pytest.mark.slow
def test_refused_folders_answer_503_with_why(broken):
    """Infer and ready answer 503 with the reason, a load 400 with it."""
    for name, words in [*BROKEN.items(), (UNLOADABLE, "model.onnx")]:
        url = f"{broken.url}/v2/models/{name}"
        answer = call("POST", url + "/infer", json={"inputs": [INPUT]})
        assert answer.status_code == 503 and words in answer.json()["error"], answer.text
        answer = call("GET", url + "/ready")
        if name != "stats":  # GET /v2/models/stats/ready: the route table has no such path
            assert answer.status_code == 503 and words in answer.json()["error"], answer.text
        answer = call("POST", f"{broken.url}/v2/repository/models/{name}/load", headers=CONTROL)
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text
    answer = call("POST", f"{broken.url}/v2/models/{SERVED}/infer", json={"inputs": [INPUT]})
    assert answer.status_code == 200, answer.text


@pytest.mark.slow
def test_no_answer_names_a_filesystem_path(broken, tmp_path_factory):
    for name in [*BROKEN, UNLOADABLE, SERVED, "nope"]:  # every answer, asserted above or not
        url = f"{broken.url}/v2/models/{name}"
        call("POST", url + "/infer", json={"inputs": [INPUT]})
        for path in ("", "/ready", "/config"):
            call("GET", url + path)
        call("POST", f"{broken.url}/v2/repository/models/{name}/load", headers=CONTROL)
    call("GET", broken.url + "/v2/health/ready")
    call("POST", f"{broken.url}/classify", files={"image": ("x.png", b"\x89PNG\r\n\x1a\n")})
    base = tmp_path_factory.getbasetemp()
    places = {str(base), str(base.resolve()), os.path.realpath(base)}
    assert len(BODIES) > 30
    for body in BODIES:
        assert not any(place in body for place in places), body


@pytest.mark.slow
def test_a_tampered_variant_is_refused_with_its_reason(serve_root, tmp_path):
    repo = subset(serve_root / "repo", tmp_path / "repo", ["torch.onnx", "torch.tflite"])
    tamper(repo / "torch.tflite")
    server = Live(repo, "--golden", "none", log=tmp_path / "server.log")
    try:
        server.wait("/v2/health/live")
        for _ in range(300):  # loading runs after start-up; bounded at about a minute
            status, body = server.get("/v2/health/ready")
            if "loading" not in body.get("error", ""):
                break
            time.sleep(0.2)
        assert status == 503 and "torch.tflite" in body["error"]
        status, body = server.get("/v2/models/torch.tflite/ready")
        assert status == 503 and body["ready"] is False and "sha256" in body["error"]
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        with pytest.raises(triton.InferenceServerException, match=r"not ready.*sha256") as e:
            infer(client, "torch.tflite", seeded(1), True)
        assert e.value.status() == "503"
        assert infer(client, "torch.onnx", seeded(1), True).as_numpy("logits").shape == (1, 10)
    finally:
        server.stop()
