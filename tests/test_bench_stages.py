# ruff: noqa: E501  (the cases below read as a table: one stack per line)
"""benchmarks/stages.py: a sample's stage from its stack, shares that account for every
sample, and the headline ratios from the rows beside them. The breakdown a real py-spy
measured is checked on the quick bench run (tests/test_bench.py)."""

from __future__ import annotations

import pytest

from benchmarks import stages

RUN = "Server.run (uvicorn/server.py:86);Runner.run (asyncio/runners.py:118)"
APP = RUN + ";RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:422)"
TANDEM = APP + ";App.__call__ (serve/dataplane.py:103);App.infer (serve/dataplane.py:130)"
BARE = APP + ";v2_app.<locals>.app (peer_asgi.py:70)"
ORT = "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:406)"


@pytest.mark.parametrize(
    "stack, stage",
    [
        (RUN, stages.SERVER),
        ("<module> (peer_asgi.py:99);main (peer_asgi.py:95);" + RUN, stages.SERVER),
        ("_run_module_as_main (<frozen runpy>:198);main (serve/__main__.py:100);" + RUN, stages.SERVER),
        (APP + ";HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:1)", stages.SERVER),
        (TANDEM, "app (other)"),
        (RUN + ";GuardedProtocol.data_received (serve/connections.py:60)", "connection guard"),
        (RUN + ";GuardedProtocol.data_received (serve/connections.py:60);HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:1)", stages.SERVER),
        (TANDEM + ";App.receive_request (serve/dataplane.py:180);read_body (serve/limits.py:30)", "read body"),
        (TANDEM + ";parse_request (serve/v2.py:230);load_json (serve/v2.py:82)", "parse + checks"),
        (TANDEM + ";Batcher.infer (serve/batching.py:99);Batcher._alone (serve/batching.py:140)", "batching"),
        (TANDEM + ";Batcher._alone (serve/batching.py:140);Backend.predict (harness/backend.py:68)", "contract checks"),
        (TANDEM + ";Backend.predict (harness/backend.py:68);OnnxRunner.run (harness/runners.py:93);" + ORT, "runtime"),
        (TANDEM + ";encode_response (serve/v2_response.py:40)", "encode"),
        (TANDEM + ";encode_response (serve/v2_response.py:40);json_logits (serve/v2_response.py:90)", "encode"),
        (TANDEM + ";parse_request (serve/v2.py:230);json_pixels (serve/tensors.py:60)", "parse + checks"),
        (TANDEM + ";respond (serve/dataplane.py:70);RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:524)", "send"),
        (TANDEM + ";Timed.__exit__ (serve/metrics.py:126)", "metrics"),
        (BARE, "app (other)"),
        (BARE + ";parse (peer_asgi.py:40)", "parse + checks"),
        (BARE + ";" + ORT, "runtime"),
        (BARE + ";encode (peer_asgi.py:50)", "encode"),
        (BARE + ";answer (peer_asgi.py:33);RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:524)", "send"),
    ],
)  # fmt: skip
def test_a_sample_is_charged_to_its_innermost_stage(stack, stage):
    assert stages.charge(stack) == stage


def test_shares_account_for_every_sample():
    raw = "\n".join([f"{TANDEM};{ORT} 30", f"{TANDEM} 10", f"{RUN} 60", "garbage", ""])
    share, samples = stages.shares(raw)
    assert samples == 100 and set(share) == set(stages.STAGES)
    assert share["runtime"] == 0.3 and share["app (other)"] == 0.1
    assert share[stages.SERVER] == 0.6 and sum(share.values()) == pytest.approx(1.0)
    assert stages.shares("") == ({}, 0)


def test_headline_is_computed_from_the_rows():
    rows = [
        {"server": s, "concurrency": c, "req_per_s": r}
        for s, c, r in [
            ("tandem-v2-binary", 1, 800.0), ("bare-asgi-v2", 1, 1000.0),
            ("tandem-v2-binary", 16, 900.0), ("bare-asgi-v2", 16, 1000.0),
            ("tandem-v2-json", 1, 700.0), ("bare-asgi-v2-json", 1, None),
        ]
    ]  # fmt: skip
    by = {(r["server"], r["over"]): r["ratio"] for r in stages.headline({"rows": rows})}
    assert by["tandem-v2-binary", "bare-asgi-v2"] == {"c1": 0.8, "c16": 0.9}
    assert by["tandem-v2-json", "bare-asgi-v2-json"] == {"c1": None, "c16": None}, "skipped"
    assert by["tandem-tfserving-rest", "tandem-v2-json"] == {"c1": None, "c16": None}
    text = "\n".join(stages.headline_md({"rows": rows}))
    assert "| tandem-v2-binary | bare-asgi-v2 | 0.80 | 0.90 |" in text
