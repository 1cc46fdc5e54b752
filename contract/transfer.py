"""Exact weight transfer between the PyTorch and Keras builds of the one CNN.

Conventions mapped explicitly:
- conv kernels: torch OIHW <-> keras HWIO
- dense kernels: torch (out, in) <-> keras (in, out)
- the first dense layer after Flatten: torch flattens NCHW (c, h, w), keras NHWC (h, w, c);
  after global average pooling both hand it (c,), and nothing is permuted
- BatchNorm: same eps from the spec on both; momentum is torch m == keras 1 - m (spec)
"""

from __future__ import annotations

import numpy as np

from contract.spec import CNNSpec


def _flatten_perm(w: np.ndarray, spec: CNNSpec, to_keras: bool) -> np.ndarray:
    """Reorder the input axis of a (out, in) dense weight between CHW and HWC flatten order."""
    if spec.head != "flatten":
        return w
    side, c = spec.feature_side, spec.widths[-1]
    out = w.shape[0]
    if to_keras:
        return w.reshape(out, c, side, side).transpose(0, 2, 3, 1).reshape(out, -1)
    return w.reshape(out, side, side, c).transpose(0, 3, 1, 2).reshape(out, -1)


def torch_to_keras(torch_net, model) -> None:
    """Copy a contract.torch_cnn.CNN's weights into a Keras model built from the same spec."""
    # Here, not at the top: importing the Keras build imports TensorFlow, which the torch
    # trainer and the torch exporters never need.
    from contract import keras_cnn

    spec = torch_net.spec
    for src, dst in zip(torch_net.convs(), keras_cnn.convs(model), strict=True):
        dst.set_weights([_np(src.weight).transpose(2, 3, 1, 0), _np(src.bias)])
    for src, dst in zip(torch_net.norms(), keras_cnn.norms(model), strict=True):
        dst.set_weights([_np(t) for t in (src.weight, src.bias, src.running_mean, src.running_var)])
    for i, (src, dst) in enumerate(zip(torch_net.denses(), keras_cnn.denses(model), strict=True)):
        w = _np(src.weight)
        if i == 0:
            w = _flatten_perm(w, spec, to_keras=True)
        dst.set_weights([w.T, _np(src.bias)])


def keras_to_torch(model, torch_net) -> None:
    """Copy a Keras model's weights into a contract.torch_cnn.CNN built from the same spec."""
    import torch

    from contract import keras_cnn

    spec = torch_net.spec

    def put(param: torch.Tensor, value: np.ndarray) -> None:
        if tuple(param.shape) != value.shape:
            raise ValueError(f"shape mismatch: torch {tuple(param.shape)} vs keras {value.shape}")
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    for src, dst in zip(keras_cnn.convs(model), torch_net.convs(), strict=True):
        kernel, bias = src.get_weights()
        put(dst.weight, kernel.transpose(3, 2, 0, 1))
        put(dst.bias, bias)
    for src, dst in zip(keras_cnn.norms(model), torch_net.norms(), strict=True):
        gamma, beta, mean, var = src.get_weights()
        for param, value in zip(
            (dst.weight, dst.bias, dst.running_mean, dst.running_var),
            (gamma, beta, mean, var),
            strict=True,
        ):
            put(param, value)
    for i, (src, dst) in enumerate(zip(keras_cnn.denses(model), torch_net.denses(), strict=True)):
        kernel, bias = src.get_weights()
        w = kernel.T
        if i == 0:
            w = _flatten_perm(w, spec, to_keras=False)
        put(dst.weight, w)
        put(dst.bias, bias)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()
