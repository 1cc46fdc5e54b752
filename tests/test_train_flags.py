"""--bf16, --compile, --channels-last and --fused-adam on the CPU: each changes what it says
(the policy, the compiled step, the memory format, the optimizer kernel), and the results
stay within the stated tolerance (docs/training.md) of the plain run (3 epochs on digits, dropout
off: rounding is the only difference, and training grows it, as `make lockstep` shows)."""

from __future__ import annotations

import numpy as np
import pytest

from train import checkpoint, data
from train.__main__ import run
from train.config import TRAINERS, TrainConfig

pytestmark = pytest.mark.slow  # trains 13 models, exports one; torch.compile compiles

RUN = dict(epochs=3, dropout=0.0, device="cpu", quiet=True)
# The stated tolerance (docs/training.md, "Speed-up flags"), measured over seeds 0 and 1 with
# margin: test accuracy within `points` of the plain run's, and the two trained models
# (float32 rebuilds, as exported) agreeing on the top-1 of `agree` of the test images.
TOLERANCE = {
    "bf16": {"points": 0.02, "agree": 0.98},
    "compile": {"points": 0.01, "agree": 0.985},
    "channels_last": {"points": 0.01, "agree": 0.985},
    "fused_adam": {"points": 0.01, "agree": 0.985},
}


class Seen:
    """An on_step that looks at the model once, before the first step, and keeps what
    `look` returns; the model it saw stays reachable for later checks."""

    def __init__(self, look) -> None:
        self.look, self.found, self.model = look, None, None

    def __call__(self, model) -> None:
        if self.model is None:
            self.model, self.found = model, self.look(model)


def train(out, trainer: str, on_step=None, **flags) -> tuple[dict, np.ndarray]:
    """(metrics, test logits of the checkpoint rebuilt in float32, as export rebuilds it)."""
    cfg = TrainConfig(out=out, **{**RUN, **flags})
    splits = data.load("digits", 8, 1, cfg.seed)
    metrics = run(cfg, trainer, splits, on_step=on_step)
    ckpt = checkpoint.find(trainer, out)
    if ckpt.framework == "torch":
        import torch

        with torch.no_grad():
            logits = checkpoint.load_torch(ckpt)(torch.from_numpy(splits.test.images)).numpy()
    else:
        logits = np.asarray(checkpoint.load_keras(ckpt).predict_on_batch(splits.test.images))
    assert logits.dtype == np.float32
    return metrics, logits


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict[str, tuple[dict, np.ndarray]]:
    root = tmp_path_factory.mktemp("plain")
    return {t: train(root, t) for t in TRAINERS}


def within_tolerance(flag: str, plain: tuple, flagged: tuple) -> None:
    (m0, logits0), (m1, logits1) = plain, flagged
    tol = TOLERANCE[flag]
    assert abs(m1["test_accuracy"] - m0["test_accuracy"]) <= tol["points"], (m0, m1)
    agree = float((logits0.argmax(1) == logits1.argmax(1)).mean())
    assert agree >= tol["agree"], f"top-1 agreement {agree:.4f}"
    print(
        f"--{flag}: accuracy {m1['test_accuracy']:.4f} vs {m0['test_accuracy']:.4f}, "
        f"top-1 agreement {agree:.4f}, max abs logit diff {np.abs(logits1 - logits0).max():.3g}"
    )


def keras_dtypes(model) -> dict:
    import keras

    from train import keras_model

    images = np.zeros((2, *model.input_shape[1:]), np.float32)
    return {
        "conv": keras_model.convs(model)[0].compute_dtype,
        "conv_weights": keras_model.convs(model)[0].kernel.dtype,
        "logits_layer": keras_model.denses(model)[-1].compute_dtype,
        "logits": keras.backend.standardize_dtype(model(images, training=False).dtype),
    }


KERAS = ("keras-fit", "keras-tape")
# What each flag changes, as seen on the model before the first step.
LOOK = {"bf16": keras_dtypes, "compile": lambda model: model.jit_compile}


@pytest.fixture(scope="module")
def keras_flagged(tmp_path_factory) -> dict[tuple[str, str], tuple]:
    """(flag, trainer) -> (metrics, float32 test logits, what LOOK[flag] saw)."""
    root = tmp_path_factory.mktemp("keras-flagged")
    runs = {}
    for flag in LOOK:
        for trainer in KERAS:
            seen = Seen(LOOK[flag])
            runs[flag, trainer] = (*train(root / flag, trainer, seen, **{flag: True}), seen.found)
    return runs


@pytest.mark.parametrize("trainer", KERAS)
def test_keras_bf16_is_mixed_bfloat16_with_float32_logits(plain, keras_flagged, trainer):
    *flagged, found = keras_flagged["bf16", trainer]
    assert found == {
        "conv": "bfloat16",
        "conv_weights": "float32",
        "logits_layer": "float32",
        "logits": "float32",
    }
    within_tolerance("bf16", plain[trainer], flagged)


@pytest.mark.parametrize("trainer", KERAS)
def test_keras_compile_is_xla(plain, keras_flagged, trainer):
    *flagged, found = keras_flagged["compile", trainer]
    assert found is True
    within_tolerance("compile", plain[trainer], flagged)
    # The rounding differs from the plain step's: the XLA-compiled step is what ran.
    assert not np.array_equal(flagged[1], plain[trainer][1])


@pytest.mark.parametrize("flag", LOOK)
def test_keras_fit_and_tape_stay_one_computation(keras_flagged, flag):
    """As without flags: model.fit and the GradientTape loop give the same model."""
    fit, tape = (keras_flagged[flag, trainer][1] for trainer in KERAS)
    np.testing.assert_array_equal(fit, tape)


def test_torch_bf16_autocasts_on_the_cpu(plain, tmp_path):
    dtypes = set()

    def hook(model):  # records the first conv's output dtype at every step
        model.convs()[0].register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))

    flagged = train(tmp_path, "torch", on_step=Seen(hook), bf16=True)
    import torch

    assert dtypes == {torch.bfloat16}
    within_tolerance("bf16", plain["torch"], flagged)


def test_keras_compile_repeats_itself(tmp_path):
    """XLA needs op determinism off (train/keras_tape.py); on the CPU a run still repeats."""
    a = train(tmp_path / "a", "keras-tape", compile=True, epochs=1)[1]
    b = train(tmp_path / "b", "keras-tape", compile=True, epochs=1)[1]
    np.testing.assert_array_equal(a, b)


def test_torch_compile(plain, tmp_path):
    import torch._dynamo.utils

    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    flagged = train(tmp_path, "torch", compile=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs
    within_tolerance("compile", plain["torch"], flagged)


def test_torch_channels_last(plain, tmp_path):
    import torch

    def look(model) -> bool:
        return model.convs()[1].weight.is_contiguous(memory_format=torch.channels_last)

    seen = Seen(look)
    flagged = train(tmp_path, "torch", on_step=seen, channels_last=True)
    assert seen.found is True
    within_tolerance("channels_last", plain["torch"], flagged)


def test_torch_fused_adam(plain, tmp_path):
    """--fused-adam: the checkpoint's optimizer is the fused kernel's, the model the same
    within the tolerance (the kernel rounds differently: measured 99.7% / 100% agreement)."""
    import torch

    flagged = train(tmp_path, "torch", fused_adam=True)
    state = torch.load(tmp_path / "torch" / "model.pt", weights_only=True)["optimizer"]
    assert state["param_groups"][0]["fused"] is True
    within_tolerance("fused_adam", plain["torch"], flagged)


def test_keras_resume_keeps_its_policy(tmp_path):
    """A Keras checkpoint holds its dtype policy: resuming with another --bf16 is refused."""
    train(tmp_path, "keras-tape", bf16=True, epochs=2, stop_after=1)
    with pytest.raises(SystemExit, match="mixed_bfloat16 policy"):
        train(tmp_path, "keras-tape", epochs=2, resume=True)


def test_bf16_checkpoint_exports_float32_graphs(tmp_path):
    """The exporters rebuild a float32 model from the spec and copy the weights in, so a
    mixed_bfloat16 checkpoint gives the same float32 artifacts, each passing parity."""
    import onnx
    import tensorflow as tf

    from export.matrix import export_all
    from export.repository import artifact, read_manifest
    from harness import parity
    from harness.verdict import PASS

    train(tmp_path / "checkpoints", "keras-fit", bf16=True, epochs=1)
    formats = ["savedmodel", "tflite", "onnx-tf", "onnx", "torchscript"]
    export_all(["keras-fit"], formats, tmp_path / "checkpoints", tmp_path / "repo")
    variant = tmp_path / "repo" / "keras-fit.onnx-tf"  # tf2onnx writes what the Keras graph holds
    graph = onnx.load(artifact(variant, read_manifest(variant))).graph
    kinds = {t.data_type for t in graph.initializer}
    assert onnx.TensorProto.FLOAT in kinds and onnx.TensorProto.BFLOAT16 not in kinds
    variant = tmp_path / "repo" / "keras-fit.savedmodel"
    serving = tf.saved_model.load(str(artifact(variant, read_manifest(variant))))
    outputs = serving.signatures["serving_default"].structured_outputs
    assert {o.dtype for o in outputs.values()} == {tf.float32}
    result = parity.run(tmp_path / "repo", tmp_path / "checkpoints", tmp_path / "reports")
    assert {v["name"]: v["verdict"] for v in result["variants"]} == {
        **{f"keras-fit.{f}": PASS for f in formats},
        "keras-fit.eager-torch": PASS,
    }
