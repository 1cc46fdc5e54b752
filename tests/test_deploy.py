"""deploy/: the Kubernetes and KServe manifests, validated without a cluster (every field
round-trips through the API's own models; image, ports, user and paths match their one
source; the autoscaler follows the capacity plan; the probes answer on a live server; memory
covers a measured RSS). The plan itself: tests/test_capacity.py."""

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
from serve_live import free_port, rss_mib

from contract.formats import FORMATS
from contract.names import TRAINERS, variant_name
from deploy import (
    KSERVE_CANARY,
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
from export import repository
from serve.app import create_app
from serve.config import ServeConfig

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
    (KSERVE_TANDEM, "maxUnavailable", "maxUnavailble", ".rollingUpdate.maxUnavailble"),
    (KSERVE_CANARY, "\n    canaryTrafficPercent", "\n    canaryTrafficPct", ".canaryTrafficPct"),
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
    app = create_app(ServeConfig(repository=Path("/nonexistent"))).api
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
        assert FORMATS[fmt].triton_platform and not FORMATS[fmt].edge


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
