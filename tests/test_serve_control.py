"""Model control (load/unload) as an attacker would try it: off by default; with
--model-control explicit, only a request holding the token, addressed to this server
and not sent by another site's page, gets through. The token never shows."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from serve_live import Live, subset

from serve import control
from serve.__main__ import parse

MODELS = ["torch.onnx", "torch.tflite"]
TOKEN = "s3cret-control-token-for-tests-0123"  # what a user would put in the variable
# What a cross-site page can send without a CORS preflight, and a rebinding host name.
ATTACKER = {
    "Origin": "http://evil.example",
    "Host": "attacker.example",
    "Content-Type": "text/plain",
}
GOOD = {"Authorization": f"Bearer {TOKEN}"}
INPUT = {"name": "images", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": [0.0] * 64}


def post(server: Live, path: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.url + path, content=b"{}", headers=headers or {}, timeout=60)


def unload(server: Live, model: str, headers: dict | None = None) -> httpx.Response:
    return post(server, f"/v2/repository/models/{model}/unload", headers)


def load(server: Live, model: str, headers: dict | None = None) -> httpx.Response:
    return post(server, f"/v2/repository/models/{model}/load", headers)


def infer(server: Live, model: str) -> httpx.Response:
    body = {"inputs": [INPUT]}
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=60)


@pytest.fixture(scope="module")
def repo(serve_root, tmp_path_factory):
    return subset(serve_root / "repo", tmp_path_factory.mktemp("control") / "repo", MODELS)


@pytest.fixture(scope="module")
def default(repo, tmp_path_factory):
    with Live(repo, "--golden", "none", log=tmp_path_factory.mktemp("log") / "log") as server:
        yield server


@pytest.fixture(scope="module")
def explicit(repo, tmp_path_factory):
    """Control on, the token from the environment (as docs/serving.md advises)."""
    log = tmp_path_factory.mktemp("log") / "log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(control.TOKEN_ENV, TOKEN)
        server = Live(repo, "--golden", "none", "--model-control", "explicit", log=log)
    with server:
        yield server


@pytest.mark.slow
def test_control_is_off_by_default(default):
    for model in MODELS:
        for headers in (ATTACKER, GOOD, {}):
            for answer in (unload(default, model, headers), load(default, model, headers)):
                assert answer.status_code == 403, answer.text
                assert "--model-control explicit" in answer.json()["error"]
    assert default.get("/v2/health/ready")[0] == 200  # nothing was unloaded
    assert infer(default, MODELS[0]).status_code == 200
    assert "model_repository" in default.get("/v2")[1]["extensions"]


@pytest.mark.slow
def test_missing_or_wrong_token_is_401(explicit):
    model = MODELS[0]
    for headers in ({}, {"Authorization": "Basic " + TOKEN}, {"Authorization": "Bearer"}):
        answer = unload(explicit, model, headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in answer.json()["error"]
    for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "x" * len(TOKEN)):
        answer = unload(explicit, model, {"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 401, answer.text
        assert "invalid_token" in answer.headers["WWW-Authenticate"]
        assert TOKEN not in answer.text
    assert explicit.get(f"/v2/models/{model}/ready")[0] == 200


@pytest.mark.slow
def test_token_from_a_foreign_host_or_origin_is_403(explicit):
    port = explicit.port
    for extra in (
        ATTACKER,
        {"Host": "attacker.example"},
        {"Host": f"attacker.example:{port}"},  # DNS rebinding keeps the port
        {"Host": f"127.0.0.1:{port + 1}"},
        {"Origin": "http://evil.example"},
        {"Origin": f"http://evil.example:{port}"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": f"https://127.0.0.1.evil.example:{port}"},
    ):
        for answer in (
            unload(explicit, MODELS[0], GOOD | extra),
            load(explicit, "x", GOOD | extra),
        ):
            assert answer.status_code == 403, (extra, answer.text)
            assert TOKEN not in answer.text
    assert explicit.get(f"/v2/models/{MODELS[0]}/ready")[0] == 200


@pytest.mark.slow
def test_right_token_unloads_and_loads(explicit):
    model = MODELS[1]
    answer = unload(explicit, model, GOOD)
    assert answer.status_code == 200, answer.text
    assert explicit.get(f"/v2/models/{model}/ready")[0] == 503
    assert explicit.get("/v2/health/ready")[0] == 503
    refused = infer(explicit, model)
    assert refused.status_code == 503 and "unloaded" in refused.json()["error"]
    # The loopback names and a same-origin page of this server are this server too.
    same_site = {
        "Host": f"localhost:{explicit.port}",
        "Origin": f"http://localhost:{explicit.port}",
    }
    answer = load(explicit, model, GOOD | same_site)
    assert answer.status_code == 200, answer.text
    assert explicit.get(f"/v2/models/{model}/ready")[0] == 200
    assert explicit.get("/v2/health/ready")[0] == 200
    assert infer(explicit, model).status_code == 200
    answer = load(explicit, "nope", GOOD)
    assert answer.status_code == 400 and "no variant 'nope'" in answer.json()["error"]


@pytest.mark.slow
def test_other_routes_need_no_token(explicit):
    assert httpx.get(explicit.url + "/").status_code == 200
    assert infer(explicit, MODELS[0]).status_code == 200
    tf = httpx.post(
        f"{explicit.url}/v1/models/{MODELS[0]}:predict", json={"inputs": [[[[0.0]] * 8] * 8]}
    )
    assert tf.status_code == 200, tf.text
    index = post(explicit, "/v2/repository/index", ATTACKER)
    assert index.status_code == 200 and {row["state"] for row in index.json()} == {"READY"}


@pytest.mark.slow
def test_token_never_in_the_log(explicit):
    unload(explicit, "x", {"Authorization": f"Bearer {TOKEN}x"})  # a near miss, refused
    text = explicit.log.read_text()
    assert "Uvicorn running" in text or "ready" in text, text
    assert TOKEN not in text


def run_serve(*argv: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != control.TOKEN_ENV}
    if token is not None:
        env[control.TOKEN_ENV] = token
    cmd = [sys.executable, "-m", "serve", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_explicit_without_a_token_will_not_start(tmp_path):
    done = run_serve("--repository", str(tmp_path), "--model-control", "explicit")
    assert done.returncode != 0
    assert control.TOKEN_ENV in done.stderr and "--control-token" in done.stderr
    assert "secrets.token_urlsafe" in done.stderr  # says how to make one


def test_help_never_prints_the_token(tmp_path):
    done = run_serve("--help", token=TOKEN)
    assert done.returncode == 0 and "--model-control" in done.stdout
    assert TOKEN not in done.stdout and f"${control.TOKEN_ENV}" in done.stdout


@pytest.mark.parametrize(
    "argv, words, secret",
    [
        (["--model-control", "explicit", "--control-token", "tiny-tok"], "at least 16", "tiny-tok"),
        (
            ["--model-control", "explicit", "--control-token", "has a space in it, long"],
            "without spaces",
            "has a space",
        ),
        (["--control-token", TOKEN], "no effect without --model-control explicit", TOKEN),
        (["--model-control", "open"], "invalid choice", TOKEN),
    ],
    ids=["short", "space", "token-without-explicit", "unknown-mode"],
)
def test_bad_control_flags_say_what_to_fix(argv, words, secret, capsys, monkeypatch):
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert words in err and secret not in err


def test_token_from_the_environment(monkeypatch):
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    config = parse(["--model-control", "explicit"])
    assert config.control_token == TOKEN and TOKEN not in repr(config)
    assert parse([]).control_token is None  # control off: the variable is not read


@pytest.mark.parametrize(
    "bind, host, ok",
    [
        ("127.0.0.1", "127.0.0.1:8000", True),
        ("127.0.0.1", "localhost:8000", True),
        ("127.0.0.1", "[::1]:8000", True),
        ("127.0.0.1", "LOCALHOST:8000", True),
        ("127.0.0.1", "127.0.0.1", False),  # port 80 implied
        ("127.0.0.1", "evil@127.0.0.1:8000", False),
        ("127.0.0.1", "127.0.0.1:8000/x", False),
        ("127.0.0.1", "10.0.0.5:8000", False),
        ("10.0.0.5", "10.0.0.5:8000", True),
        ("10.0.0.5", "localhost:8000", False),  # not a loopback bind
        ("0.0.0.0", "10.0.0.5:8000", True),  # wildcard: any address literal
        ("0.0.0.0", "rebind.evil.example:8000", False),
        ("::", "[fe80::1]:8000", True),
    ],
)
def test_host_names_this_server(bind, host, ok):
    assert control.ModelControl("explicit", TOKEN, bind, 8000).ours(host) is ok
