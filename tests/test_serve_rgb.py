"""The server on 3-channel variants: tensors and an uploaded colour image reach the model in
NHWC order, the layout bugs grey images hide."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from pages import image_file
from serve_live import Live, infer, subset

import harness
from serve import images

pytestmark = pytest.mark.slow  # trains and exports the 3-channel repository


def test_three_channel_variants(rgb_repo, tmp_path):
    """RGB 16x16: tensors and an uploaded colour image reach the model in NHWC order."""
    repo = subset(rgb_repo[1], tmp_path / "repo", ["torch.onnx", "torch.tflite"])
    with Live(repo, "--golden", "none", log=tmp_path / "server.log") as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        rng = np.random.default_rng(3)
        x = rng.uniform(0, 255, (5, 16, 16, 3)).astype(np.float32)
        data = image_file(x[0], size=16)
        answer = httpx.post(f"{server.url}/classify", files={"image": ("c.png", data)})
        assert answer.status_code == 200, answer.text
        tops = {row["model"]: row["top"] for row in answer.json()["results"]}
        for name in ("torch.onnx", "torch.tflite"):
            assert client.get_model_metadata(name)["inputs"][0]["shape"] == [-1, 16, 16, 3]
            model = harness.load(repo / name, threads=1)
            got = infer(client, name, x, True).as_numpy("logits")
            np.testing.assert_array_equal(got, model.predict(x))
            image = images.decode(data, (16, 16, 3))
            np.testing.assert_array_equal(image, x[:1].astype(np.uint8))
            assert tops[name] == model.classify(image, k=3)[0]
