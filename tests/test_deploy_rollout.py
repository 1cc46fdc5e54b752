"""How a new release reaches the pods: kserve-tandem.yaml's rolling update never drops
capacity, and kserve-canary.yaml is the same predictor and container in Serverless mode
with a canary share, one storage URI apart (both round-trip through the API's models:
tests/test_deploy.py)."""

from __future__ import annotations

from deploy import KSERVE_CANARY, KSERVE_TANDEM, manifests


def isvc(path) -> dict:
    (doc,) = [d for d in manifests.load(path) if d["kind"] == "InferenceService"]
    return doc


def env(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_the_canary_is_the_same_predictor_in_serverless_mode():
    plain = isvc(KSERVE_TANDEM)
    canary = isvc(KSERVE_CANARY)
    assert canary["metadata"]["name"] == plain["metadata"]["name"]  # one service, two modes
    assert plain["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    notes = canary["metadata"]["annotations"]
    assert notes["serving.kserve.io/deploymentMode"] == "Serverless"  # KServe's canary mode
    assert notes["autoscaling.knative.dev/class"] == "hpa.autoscaling.knative.dev"  # scale on CPU
    predictor = dict(canary["spec"]["predictor"])
    assert 0 < predictor.pop("canaryTrafficPercent") < 100
    (new,), (old,) = predictor.pop("containers"), plain["spec"]["predictor"]["containers"]
    same = {k: v for k, v in plain["spec"]["predictor"].items() if k != "containers"}
    assert predictor == {k: v for k, v in same.items() if k != "deploymentStrategy"}
    uris = env(new).pop("STORAGE_URI"), env(old)["STORAGE_URI"]
    assert uris[0].startswith(uris[1] + "/") and uris[0] != uris[1]  # a release of its own
    unlike = [k for k in {*new, *old} if new.get(k) != old.get(k)]
    assert unlike == ["env"]  # same image, probes, resources, security: one URI apart
    assert [e["name"] for e in new["env"]] == [e["name"] for e in old["env"]]


def test_a_raw_deployment_rollout_never_drops_capacity():
    strategy = isvc(KSERVE_TANDEM)["spec"]["predictor"]
    strategy = strategy["deploymentStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
