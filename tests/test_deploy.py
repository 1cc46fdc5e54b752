"""deploy/: the Kubernetes and KServe manifests, validated without a cluster (every field
round-trips through the API's own models; image, ports, user and paths match their one
source; the probes answer on a live server; memory covers a measured RSS), and the capacity
plan, whose table in docs/kubernetes.md must equal what deploy/capacity.py computes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from serve_live import free_port

from deploy import (
    HEADROOM,
    KSERVE_MODEL_DIR,
    KSERVE_TANDEM,
    KSERVE_TRITON,
    KUBERNETES,
    KUSTOMIZATION,
    MANIFESTS,
    MEMORY_MARGIN,
    TRITON_FORMATS,
    capacity,
    manifests,
)
from export import repository, triton_config
from serve.server import ServeConfig
from train.config import TRAINERS, variant_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "serve.Dockerfile"
DOCS = {path.name: manifests.load(path) for path in MANIFESTS}
KIND = {"Deployment", "Service", "HorizontalPodAutoscaler"}


def dockerfile() -> dict:
    """The serving image's facts, from its Dockerfile: ENV, EXPOSE, USER."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]  # the runtime stage
    env = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', re.search(r"\nENV (.*)", final).group(1)))
    return {
        "env": {k: v.strip('"') for k, v in env.items()},
        "expose": [int(p) for p in re.search(r"\nEXPOSE (.*)", final).group(1).split()],
        "user": int(re.search(r"\nUSER (\d+)", final).group(1)),
    }


def image_tag() -> str:
    """The serving image's name, as `make docker` tags it."""
    return re.search(r"serve\.Dockerfile -t (\S+)", (ROOT / "Makefile").read_text()).group(1)


def doc(name: str, kind: str) -> dict:
    return next(d for d in DOCS[name] if d["kind"] == kind)


def serving_containers() -> dict[str, dict]:
    """The tandem-serve container of the Deployment and of the KServe predictor."""
    deployment = doc(KUBERNETES.name, "Deployment")["spec"]["template"]["spec"]
    predictor = doc(KSERVE_TANDEM.name, "InferenceService")["spec"]["predictor"]
    return {"kubernetes": deployment["containers"][0], "kserve": predictor["containers"][0]}


def env(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container.get("env", [])}


# --- every field is one the API knows ---

TYPOS = [
    (KUBERNETES, "readinessProbe", "readinesProbe", ".containers[0].readinesProbe"),
    (KUBERNETES, "averageUtilization", "averageUtilisation", ".target.averageUtilisation"),
    (KUBERNETES, "targetPort: http", "targetport: http", ".ports[0].targetport"),
    (KSERVE_TRITON, "storageUri", "storageURI", ".predictor.model.storageURI"),
    (KSERVE_TANDEM, "readOnlyRootFilesystem", "readOnlyRootFileSystem", ".securityContext."),
    (KSERVE_TANDEM, "scaleTarget", "scaleTargetPercent", ".predictor.scaleTargetPercent"),
    # a container without its required name
    (KUBERNETES, "- name: tandem-serve\n          image", "- image", "validation error"),
]  # fmt: skip


def validate(paths: list[Path]) -> tuple[int, dict[str, list[str]]]:
    """`python -m deploy.manifests --json` on these files: in a process of its own, since
    importing kserve there would clash with tritonclient's protos here (deploy/manifests.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "deploy.manifests", "--json", *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.stdout, result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def typos(tmp_path_factory) -> tuple[int, dict[str, list[str]]]:
    """Each manifest with one typo of TYPOS, validated in one run."""
    folder = tmp_path_factory.mktemp("typos")
    paths = []
    for i, (path, right, wrong, _) in enumerate(TYPOS):
        assert right in path.read_text()
        paths.append(folder / f"{i}-{path.name}")
        paths[-1].write_text(path.read_text().replace(right, wrong, 1))
    return validate(paths)


def test_every_manifest_round_trips():
    returncode, problems = validate(list(MANIFESTS))
    assert problems == {str(p): [] for p in [*MANIFESTS, KUSTOMIZATION]}
    assert returncode == 0


def test_kustomization_lists_the_plain_manifests(tmp_path):
    typo = tmp_path / "kustomization.yaml"
    typo.write_text(KUSTOMIZATION.read_text().replace("newTag", "newtag"))
    (tmp_path / KUBERNETES.name).write_text(KUBERNETES.read_text())
    assert manifests.check_kustomization(typo) == [f"{typo.name}: images[0]: unknown field newtag"]
    (kustomization,) = manifests.load(KUSTOMIZATION)
    assert kustomization["resources"] == [KUBERNETES.name]
    assert [i["name"] for i in kustomization["images"]] == [image_tag()]


@pytest.mark.parametrize("index", range(len(TYPOS)), ids=[t[2].split()[0] for t in TYPOS])
def test_misspelled_field_fails(index, typos):
    returncode, found = typos
    path, _, _, where = TYPOS[index]
    (problems,) = [p for name, p in found.items() if Path(name).name == f"{index}-{path.name}"]
    assert any(where in p for p in problems), problems
    assert returncode == 1


# --- one source for each fact ---


def test_image_ports_user_and_paths_match_the_dockerfile():
    facts, serve = dockerfile(), ServeConfig()
    assert int(facts["env"]["PORT"]) == serve.port
    for where, container in serving_containers().items():
        assert container["image"].partition(":")[0] == image_tag(), where
        ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
        assert ports.pop("http" if where == "kubernetes" else "http1") == serve.port
        for port in ports.values():  # gRPC: exposed by the image, passed as --grpc-port
            assert port in facts["expose"]
            assert container["args"][container["args"].index("--grpc-port") + 1] == str(port)
        assert not any("model-control" in a for a in container.get("args", [])), where
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    pod = doc(KUBERNETES.name, "Deployment")["spec"]["template"]["spec"]
    predictor = doc(KSERVE_TANDEM.name, "InferenceService")["spec"]["predictor"]
    for spec in (pod, predictor):
        assert spec["securityContext"]["runAsUser"] == facts["user"]
        assert spec["securityContext"]["runAsNonRoot"] is True
    kube = serving_containers()["kubernetes"]
    mounts = {m["name"]: m for m in kube["volumeMounts"]}
    assert (
        mounts["models"]["mountPath"]
        == facts["env"]["MODEL_REPOSITORY"]
        == env(kube).get("MODEL_REPOSITORY", facts["env"]["MODEL_REPOSITORY"])
    )
    assert mounts["models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    assert env(serving_containers()["kserve"])["MODEL_REPOSITORY"] == KSERVE_MODEL_DIR


def test_every_manifest_reads_the_same_repository():
    claim = doc(KUBERNETES.name, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    uri = f"pvc://{claim['persistentVolumeClaim']['claimName']}"
    assert env(serving_containers()["kserve"])["STORAGE_URI"] == uri
    model = doc(KSERVE_TRITON.name, "InferenceService")["spec"]["predictor"]["model"]
    assert model["storageUri"] == uri


def test_probes_are_routes_of_the_server():
    from serve.routes import control_app
    from serve.server import Server

    app = control_app(Server(ServeConfig(repository=Path("/nonexistent"))))
    routes = {r.path for r in app.routes if "GET" in getattr(r, "methods", ())}
    for where, container in serving_containers().items():
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", where
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", where
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] in routes


def test_triton_loads_the_variants_its_backends_serve():
    model = doc(KSERVE_TRITON.name, "InferenceService")["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    loaded = [a.removeprefix("--load-model=") for a in model["args"] if a.startswith("--load")]
    assert "--model-control-mode=explicit" in model["args"]
    assert loaded == [variant_name(t, f) for t in TRAINERS for f in TRITON_FORMATS]
    for fmt in TRITON_FORMATS:  # each has a config.pbtxt naming a platform Triton builds in
        assert fmt in triton_config.PLATFORM and fmt not in repository.EDGE_FORMATS


# --- the capacity plan ---


def bench_fixture(triton_skipped: bool = False) -> dict:
    """A bench report shaped as `make bench` writes it (figures of this machine's runs)."""
    figures = {
        "tandem-v2-binary": [(1, 1780.0, 0.5, 1.2), (16, 5600.0, 2.8, 6.1)],
        "tandem-v2-json": [(1, 1400.0, 0.7, 1.6), (16, 2100.0, 7.5, 12.0)],
        "tandem-tfserving-rest": [(1, 1300.0, 0.8, 1.7), (16, 1900.0, 8.2, 13.5)],
        "triton": [(1, 240.0, 4.1, 7.9), (16, 1480.0, 10.6, 18.4)],
    }
    rows = [
        {"server": s, "concurrency": c, "req_per_s": rps, "p50_ms": p50, "p99_ms": p99,
         "server_cpu_ms_per_req": 0.5, "server_rss_mib": 410.0, "errors": 0}
        for s, runs in figures.items() for c, rps, p50, p99 in runs
    ]  # fmt: skip
    if triton_skipped:
        rows = [r for r in rows if r["server"] != "triton"]
        rows += [{"server": "triton", "concurrency": c, "req_per_s": None, "skipped": "no PyTriton"}
                 for c in (1, 16)]  # fmt: skip
    server = {"model": "torch.onnx", "server_cores": 1, "load_cores": 1, "seconds": 3.0}
    machine = {"cpu": "Intel(R) Xeon(R) Processor", "logical_cores": 2}
    return {"machine": machine, "quick": {}, "server": server | {"rows": rows}}


def test_plan_from_a_bench_report():
    plan = capacity.plan(capacity.snapshot(bench_fixture(), "fixture"))
    tandem, triton = plan["tandem-v2-binary"], plan["triton"]
    assert tandem["planned"] == pytest.approx(5600 * HEADROOM)
    assert tandem["replicas"] == {1_000: 1, 10_000: 3, 100_000: 26}  # ceil(n / 3920)
    assert triton["replicas"] == {1_000: 1, 10_000: 10, 100_000: 97}  # ceil(n / 1036)
    assert tandem["p99_ms"] == 6.1


def test_a_skipped_triton_says_so(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(bench_fixture(triton_skipped=True)))
    snap = capacity.snapshot(json.loads(bench.read_text()), str(bench))
    assert "| triton | skipped: no PyTriton |" in capacity.table(snap)
    assert capacity.max_replicas(snap, "triton") is None
    out = subprocess.run(
        [sys.executable, "-m", "deploy.capacity", "--bench", str(bench)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    assert "skipped: no PyTriton" in out.stdout


def test_write_takes_a_new_bench_into_the_page_and_manifests(tmp_path):
    bench = bench_fixture(triton_skipped=True)
    for r in bench["server"]["rows"]:
        if (r["server"], r["concurrency"]) == ("tandem-v2-binary", 16):
            r["req_per_s"] = 4000.0  # planned 2800 per replica: 36 for 100k req/s
    page = tmp_path / "kubernetes.md"
    page.write_text(capacity.PAGE.read_text())
    copies = {path: tmp_path / path.name for path in capacity.SIZED_BY}
    for path, copy in copies.items():
        copy.write_text(path.read_text())
    snap = capacity.snapshot(bench, "bench.json")
    sized_by = {copies[p]: server for p, server in capacity.SIZED_BY.items()}
    capacity.write(snap, tmp_path / "snapshot.json", page, sized_by)
    assert json.loads((tmp_path / "snapshot.json").read_text()) == snap
    assert capacity.table(snap) in page.read_text()
    assert "| tandem-v2-binary | 4,000 | 6.1 | 2,800 | 1 | 4 | 36 |" in page.read_text()

    def max_replicas(path):
        spec = [d for d in manifests.load(path) if "maxReplicas" in str(d)][-1]["spec"]
        return spec.get("maxReplicas") or spec["predictor"]["maxReplicas"]

    for path, copy in copies.items():  # Triton's row is skipped: its manifest keeps its own
        expected = 36 if path != KSERVE_TRITON else max_replicas(path)
        assert max_replicas(copy) == expected, path.name


def test_page_table_is_the_computed_one():
    snap = json.loads(capacity.SNAPSHOT.read_text())
    page = capacity.PAGE.read_text()
    start = page.index(capacity.BEGIN) + len(capacity.BEGIN)
    assert page[start : page.index(capacity.END)].strip() == capacity.table(snap), (
        "docs/kubernetes.md's capacity table is stale: run `python -m deploy.capacity` on the "
        "snapshot, or `make capacity` on a new bench report"
    )


def test_autoscaling_follows_the_plan():
    snap = json.loads(capacity.SNAPSHOT.read_text())
    assert snap["server"]["server_cores"] == 1  # the plan's rate is per one core...
    hpa = doc(KUBERNETES.name, "HorizontalPodAutoscaler")["spec"]
    metric = hpa["metrics"][0]["resource"]
    assert metric["name"] == "cpu"
    assert metric["target"]["averageUtilization"] == capacity.hpa_target()
    for path, server in capacity.SIZED_BY.items():
        spec = (
            hpa if path == KUBERNETES else doc(path.name, "InferenceService")["spec"]["predictor"]
        )
        if path != KUBERNETES:
            assert (spec["scaleMetric"], spec["scaleTarget"]) == ("cpu", capacity.hpa_target())
        assert spec["maxReplicas"] == capacity.max_replicas(snap, server), path.name
    for container in [*serving_containers().values()]:
        resources = container["resources"]  # ... so each replica is one core, guaranteed
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "1"


# --- against a live server, as the pod runs it ---


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (the JSON codec's worker processes):
    what the pod's memory limit counts, shared pages counted once per process."""
    pids, total = [pid], 0.0
    while pids:
        p = pids.pop()
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
        for task in Path(f"/proc/{p}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    return total


@pytest.mark.slow
def test_probes_answer_and_memory_covers_a_live_pod(digits_repo, tmp_path):
    """The image's entrypoint, as the pod starts it, on the `make export` repository (every
    format; it serves the image's FORMATS from a copy in $TMPDIR, the pod's /tmp): the
    probes' routes answer 200 once ready, and the manifests' memory covers the RSS of every
    served variant loaded and warm, plus the request bodies the server may hold at once
    (--max-inflight-mb), with MEMORY_MARGIN."""
    import numpy as np
    import tritonclient.http as triton

    port = free_port()
    facts = dockerfile()["env"]
    _, source = digits_repo
    env = os.environ | {"FORMATS": facts["FORMATS"], "TMPDIR": str(tmp_path), "GOLDEN": "none"}
    env |= {"MODEL_REPOSITORY": str(source), "PORT": str(port), "HOST": "127.0.0.1"}
    log = (tmp_path / "server.log").open("w")
    entrypoint = ROOT / "docker" / "serve_entrypoint.py"
    proc = subprocess.Popen(
        [sys.executable, str(entrypoint)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    container = serving_containers()["kubernetes"]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                path = container["readinessProbe"]["httpGet"]["path"]
                with urllib.request.urlopen(url + path, timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "never ready"
                time.sleep(0.5)
        with urllib.request.urlopen(url + container["livenessProbe"]["httpGet"]["path"]) as r:
            assert r.status == 200
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        formats = facts["FORMATS"].split()
        found = repository.variants(source).items()
        names = sorted(n for n, p in found if repository.read_manifest(p)["format"] in formats)
        assert len(names) == len(TRAINERS) * len(formats)
        images = np.zeros((repository.MAX_BATCH_SIZE, 8, 8, 1), np.float32)
        for name in names:  # warm: one full batch through every variant
            tensor = triton.InferInput("images", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images)
            client.infer(name, [tensor])
        measured = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    need = (measured + ServeConfig().max_inflight_mb) * MEMORY_MARGIN
    print(f"{len(names)} variants, RSS {measured:.0f} MiB; memory needed {need:.0f} MiB")
    for where, c in serving_containers().items():
        for bound in ("requests", "limits"):
            memory = c["resources"][bound]["memory"]
            assert memory.endswith("Mi") and int(memory[:-2]) >= need, (where, bound, memory)
