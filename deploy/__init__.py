"""Scale-out serving: KServe and Kubernetes manifests for the model repository, their
validation (`manifests.py`) and the capacity plan computed from `make bench` (`capacity.py`).

The manifests are plain YAML beside this file; the facts they share with the rest of the
project (image, ports, probe routes, mount path) are checked against their one source by
tests/test_deploy.py, not repeated here.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
# Plain Kubernetes (kubectl apply -k deploy/) and the KServe InferenceServices.
KUBERNETES = HERE / "tandem.yaml"
KSERVE_TANDEM = HERE / "kserve-tandem.yaml"
KSERVE_TRITON = HERE / "kserve-triton.yaml"
# kserve-tandem.yaml in Serverless mode, rolling a new release out as a canary.
KSERVE_CANARY = HERE / "kserve-canary.yaml"
KUSTOMIZATION = HERE / "kustomization.yaml"
MANIFESTS = (KUBERNETES, KSERVE_TANDEM, KSERVE_TRITON, KSERVE_CANARY)

# The formats kserve-triton.yaml loads: those whose Triton backend every Triton image ships
# (onnxruntime: the four ONNX formats; pytorch: torchscript). Left out: savedmodel (the tensorflow
# backend is not in every release), pt2 (platform torch_aoti: Triton 26.03 and later, and
# a CPU-compiled package serves on CPU only), the tflite formats (armnn_tflite is a community
# backend, in no NVIDIA image). Triton's strict readiness would keep a pod unready for any
# of them whose backend its image lacks.
TRITON_FORMATS = ("onnx", "onnx-tf", "onnx-fp16", "onnx-int8", "torchscript")

# Plan each replica at this share of its measured per-core rate; the autoscaler's CPU
# target is the same share of the one core a replica requests.
HEADROOM = 0.70
# Request rates the plan sizes for, 1-image requests per second.
LOADS = (1_000, 10_000, 100_000)
# The serving pod's memory covers its measured RSS (every variant the image serves, loaded
# and warm) plus the request bodies the server may hold at once (--max-inflight-mb), times this.
MEMORY_MARGIN = 1.25
# Where KServe's storage initializer puts (or, for pvc://, mounts) a predictor's storageUri.
KSERVE_MODEL_DIR = "/mnt/models"
