"""One init for all three trainers: drawn once, by one framework with its usual init, and
copied exactly into the other (contract/transfer.py), so every trainer starts from the same
weights. Recorded as {"source", "drawn_by", "sha256"} in spec.json and metrics.json.

The sha256 is over every transferred weight (conv, BatchNorm incl. running statistics,
dense) in the canonical layout, torch's: the same hash from either framework.
"""

from __future__ import annotations

import hashlib

import numpy as np

from contract import torch_cnn, transfer
from contract.spec import CNNSpec
from train.config import INIT_SOURCES


def flat_weights(net: torch_cnn.CNN) -> np.ndarray:
    """Every transferred weight of a torch CNN, state_dict order, as one float32 vector
    (not the normalisation constants, which come from the spec)."""
    state = net.state_dict()
    keep = [t for name, t in state.items() if t.is_floating_point() and name not in ("mean", "std")]
    return np.concatenate([t.detach().cpu().numpy().ravel() for t in keep]).astype(np.float32)


def keras_flat_weights(model, spec: CNNSpec) -> np.ndarray:
    """flat_weights of a Keras build, through the exact transfer."""
    import torch

    with torch.random.fork_rng(devices=[]):  # building draws from torch's global generator
        net = torch_cnn.CNN(spec)
    transfer.keras_to_torch(model, net)
    return flat_weights(net)


def sha256(weights: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype="<f4").tobytes()).hexdigest()


def check(source: str) -> None:
    if source not in INIT_SOURCES:
        raise ValueError(f"unknown init {source!r}; valid: {', '.join(INIT_SOURCES)}")


def start_torch(net: torch_cnn.CNN, source: str, seed: int) -> dict:
    """Give a freshly built torch CNN the run's initial weights; return their record."""
    check(source)
    if source == "keras":
        from contract import keras_cnn

        transfer.keras_to_torch(keras_cnn.build(net.spec, seed), net)
    drawn_by = "keras" if source == "keras" else "torch"
    return {"source": source, "drawn_by": drawn_by, "sha256": sha256(flat_weights(net))}


def start_keras(model, spec: CNNSpec, source: str, seed: int) -> dict:
    """Give a freshly built Keras CNN the run's initial weights; return their record."""
    check(source)
    if source == "torch":
        transfer.torch_to_keras(torch_cnn.build(spec, seed), model)
    drawn_by = "torch" if source == "torch" else "keras"
    weights = keras_flat_weights(model, spec)
    return {"source": source, "drawn_by": drawn_by, "sha256": sha256(weights)}
