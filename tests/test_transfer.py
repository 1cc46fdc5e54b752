"""Weight transfer torch <-> keras is exact (eval-mode logits within 1e-5) at 1 and 3 channels,
after real training steps so BatchNorm statistics and weights are far from their init."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from contract import datasets, keras_cnn, torch_cnn, transfer
from contract.spec import CNNSpec

TOLERANCE = 1e-5
STEPS = 8


def spec_for(channels: int) -> CNNSpec:
    return CNNSpec.for_data(image_size=16, channels=channels, num_classes=5)


def batch(spec: CNNSpec, n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    d = datasets.make_synthetic(n, spec.image_size, spec.channels, spec.num_classes, seed)
    return d.images, d.labels


def trained_torch(spec: CNNSpec) -> torch_cnn.CNN:
    net = torch_cnn.build(spec, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for step in range(STEPS):
        images, labels = batch(spec, seed=step)
        loss = torch.nn.functional.cross_entropy(
            net(torch.from_numpy(images)), torch.from_numpy(labels)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def trained_keras(spec: CNNSpec) -> keras.Model:
    model = keras_cnn.build(spec, seed=1)
    opt = keras.optimizers.Adam(3e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for step in range(STEPS):
        images, labels = batch(spec, seed=step)
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return model


def logits_pair(net: torch_cnn.CNN, model: keras.Model, spec: CNNSpec):
    images, _ = batch(spec, n=64, seed=99)
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(images)).numpy()
    return torch_logits, model.predict_on_batch(images)


@pytest.mark.parametrize("channels", [1, 3], ids=["1ch", "3ch"])
def test_torch_to_keras_exact(channels):
    spec = spec_for(channels)
    net = trained_torch(spec)
    assert not torch.allclose(net.norms()[0].running_var, torch.ones(1)), "BN stats still at init"
    model = keras_cnn.build(spec, seed=2)
    transfer.torch_to_keras(net, model)
    torch_logits, keras_logits = logits_pair(net, model, spec)
    diff = np.abs(torch_logits - keras_logits).max()
    assert diff <= TOLERANCE, f"torch->keras max abs logit diff {diff:.2e} > {TOLERANCE:.0e}"
    assert np.abs(torch_logits).max() > 0.1, "logits too small to prove anything"


@pytest.mark.parametrize("channels", [1, 3], ids=["1ch", "3ch"])
def test_keras_to_torch_exact(channels):
    spec = spec_for(channels)
    model = trained_keras(spec)
    assert not np.allclose(keras_cnn.norms(model)[0].moving_variance.numpy(), 1.0)
    net = torch_cnn.build(spec, seed=2).eval()
    transfer.keras_to_torch(model, net)
    torch_logits, keras_logits = logits_pair(net, model, spec)
    diff = np.abs(torch_logits - keras_logits).max()
    assert diff <= TOLERANCE, f"keras->torch max abs logit diff {diff:.2e} > {TOLERANCE:.0e}"


def test_flatten_permutation_is_needed():
    """Without the NCHW->NHWC flatten reorder the logits differ: the test above can fail."""
    spec = spec_for(3)
    net = trained_torch(spec)
    model = keras_cnn.build(spec, seed=2)
    transfer.torch_to_keras(net, model)
    dense = keras_cnn.denses(model)[0]
    w = net.denses()[0].weight.detach().numpy()
    dense.set_weights([w.T, net.denses()[0].bias.detach().numpy()])  # naive: no reorder
    torch_logits, keras_logits = logits_pair(net, model, spec)
    assert np.abs(torch_logits - keras_logits).max() > 1e-3


def test_momentum_and_eps_mapped():
    spec = spec_for(1)
    bn = keras_cnn.norms(keras_cnn.build(spec))[0]
    assert bn.momentum == pytest.approx(1 - spec.bn_momentum)
    assert bn.epsilon == spec.bn_eps
    tbn = torch_cnn.build(spec).norms()[0]
    assert (tbn.momentum, tbn.eps) == (spec.bn_momentum, spec.bn_eps)
