"""Validate the manifests without a cluster: each document must round-trip unchanged through
the API's own model classes, the `kubernetes` client's (Deployment, Service, autoscaler) and
the `kserve` SDK's (InferenceService).

    python -m deploy.manifests            # every manifest in deploy/; exit 1 on a problem
    python -m deploy.manifests FILE...

The clients' deserializers drop keys they do not know, silently: a misspelled field
(`readinesProbe`) would vanish and the probe with it. So each document is built into its
model, serialized back with `sanitize_for_serialization`, and must equal what was read; every
key dropped or value changed is reported by its path.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pydantic
import yaml

from deploy import KUSTOMIZATION, MANIFESTS

# (apiVersion, kind) -> the model class that validates it.
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}
PRIMITIVES = {"str": str, "int": int, "float": float, "bool": bool}


def load(path: Path) -> list[dict]:
    """The YAML documents of a file, empty ones skipped."""
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc is not None]


def model_class(name: str) -> type:
    """An OpenAPI model by class name, in the kserve SDK or the kubernetes client. The SDK
    names some Kubernetes types by their full API path (K8sIoApiAppsV1DeploymentStrategy):
    the client's class is V1DeploymentStrategy."""
    import kserve.models
    import kubernetes.client.models

    full = re.fullmatch(r"K8sIoApi[A-Z][a-z]*(V\d+(?:alpha\d+|beta\d+)?)(\w+)", name)
    names = [name, "".join(full.groups())] if full else [name]
    for package in (kserve.models, kubernetes.client.models):
        for candidate in names:
            if hasattr(package, candidate):
                return getattr(package, candidate)
    raise TypeError(f"no model class {name}")


def build(data, kind: str):
    """`data` as the model `kind`, e.g. 'V1Deployment' or 'list[V1Container]'.

    The kubernetes client's models (pydantic) build themselves with `from_dict`. The kserve
    SDK's are built field by field from their `openapi_types`, as its ApiClient does; that
    ApiClient cannot itself, since it looks up the kubernetes classes its models refer to
    (V1Container, V1ObjectMeta, ...) in `kserve.models`. Both drop keys they do not know."""
    if data is None:
        return None
    if kind.startswith("list["):
        return [build(item, kind[5:-1]) for item in data]
    if kind.startswith("dict("):
        value_kind = kind[5:-1].split(", ", 1)[1]
        return {key: build(value, value_kind) for key, value in data.items()}
    if kind == "object":
        return data  # free-form in the API: kept as written
    if kind in PRIMITIVES:
        return PRIMITIVES[kind](data)
    klass = model_class(kind)
    if issubclass(klass, pydantic.BaseModel):
        return klass.from_dict(data)  # a kubernetes model: pydantic validates it
    fields = {
        attr: build(data[key], klass.openapi_types[attr])
        for attr, key in klass.attribute_map.items()
        if isinstance(data, dict) and key in data
    }
    return klass(**fields)  # client-side validation: a required field missing raises


def serialize(obj):
    """A model back to the API's JSON form: each package's own serialization."""
    from kubernetes.client import ApiClient

    if isinstance(obj, list):
        return [serialize(item) for item in obj]
    if isinstance(obj, dict):
        return {key: serialize(value) for key, value in obj.items()}
    if not isinstance(obj, pydantic.BaseModel) and hasattr(obj, "attribute_map"):
        # a kserve model, serialized as kserve's own ApiClient does
        values = {a: getattr(obj, a) for a in obj.openapi_types}
        return {obj.attribute_map[a]: serialize(v) for a, v in values.items() if v is not None}
    return ApiClient().sanitize_for_serialization(obj)


def differences(read, written, path: str = "") -> list[str]:
    """Every place where `written` (the round trip) differs from `read`, by its path."""
    if isinstance(read, dict) and isinstance(written, dict):
        problems = [f"{path}.{key}: unknown field, dropped" for key in read if key not in written]
        problems += [f"{path}.{key}: added by the client" for key in written if key not in read]
        for key in read.keys() & written.keys():
            problems += differences(read[key], written[key], f"{path}.{key}")
        return problems
    if isinstance(read, list) and isinstance(written, list) and len(read) == len(written):
        return [
            p
            for i, pair in enumerate(zip(read, written, strict=True))
            for p in differences(*pair, f"{path}[{i}]")
        ]
    if read != written or type(read) is not type(written):
        return [f"{path}: {read!r} reads back as {written!r}"]
    return []


def check(doc: dict) -> list[str]:
    """What is wrong with one document; [] when it round-trips unchanged."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in MODELS:
        return [f"apiVersion/kind {key} is not one of {sorted(MODELS)}"]
    try:
        model = build(doc, MODELS[key])
    except (TypeError, ValueError) as e:
        return [f"{key[1]}: {e}"]  # pydantic's ValidationError is a ValueError
    return differences(doc, serialize(model), key[1])


# The fields of kustomize's Kustomization this one uses (no client model exists for it).
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "images"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}
KUSTOMIZATION_KIND = ("kustomize.config.k8s.io/v1beta1", "Kustomization")


def check_kustomization(path: Path = KUSTOMIZATION) -> list[str]:
    """The kustomization's fields are kustomize's and its resources exist."""
    (doc,) = load(path)
    problems = [f"{path.name}: unknown field {k}" for k in doc if k not in KUSTOMIZATION_FIELDS]
    if (doc.get("apiVersion"), doc.get("kind")) != KUSTOMIZATION_KIND:
        problems.append(f"{path.name}: apiVersion/kind is not {KUSTOMIZATION_KIND}")
    problems += [
        f"{path.name}: images[{i}]: unknown field {k}"
        for i, image in enumerate(doc.get("images", []))
        for k in image
        if k not in IMAGE_FIELDS
    ]
    problems += [
        f"{path.name}: resource {r} does not exist"
        for r in doc.get("resources", [])
        if not (path.parent / r).is_file()
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=list(MANIFESTS), help="manifests")
    parser.add_argument("--json", action="store_true", help="print {file: [problems]} as JSON")
    args = parser.parse_args(argv)
    found = {str(f): [p for doc in load(f) for p in check(doc)] for f in args.files}
    found[str(KUSTOMIZATION)] = check_kustomization()
    if args.json:
        print(json.dumps(found))
    else:
        for path, problems in found.items():
            print("\n".join(f"{path}: {p}" for p in problems) or f"{path}: valid")
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
