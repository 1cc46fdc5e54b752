"""A trained checkpoint, read back as an eval-mode model of either framework.

The trainers write it (train/record.py, the loops' `save`), export and the parity gate's
eager references read it:

<root>/<trainer>/spec.json     the data source, seed and CNNSpec it was trained with
<root>/<trainer>/labels.txt    one class name per line
<root>/<trainer>/model.pt | model.keras

A checkpoint of the other framework is rebuilt from the shared spec and filled by
exact weight transfer, so every trained model exists in both frameworks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from contract import datasets, transfer
from contract.names import LABELS_FILE, TRAINER_FRAMEWORK, TRAINERS
from contract.paths import CHECKPOINTS
from contract.spec import CNNSpec

SPEC_FILE = "spec.json"
WEIGHTS_FILE = {"torch": "model.pt", "keras": "model.keras"}  # by framework


class CheckpointError(FileNotFoundError):
    """A missing or unusable checkpoint; the message says how to make one."""


@dataclass(frozen=True)
class Checkpoint:
    trainer: str
    run_dir: Path
    spec: CNNSpec
    labels: list[str]
    recorded: dict  # spec.json: the data source, seed and synthetic-data settings

    def splits(self) -> datasets.Splits:
        """The exact train/val/test split this checkpoint was trained on: a folder's from the
        images prepared then, or prepared again from the folder if it has not changed."""
        r, spec = self.recorded, self.spec
        prepared = r.get("prepared")
        if prepared and (Path(prepared) / "meta.json").is_file():
            return datasets.load(prepared, spec.image_size, spec.channels, r["seed"])
        size, channels, seed = spec.image_size, spec.channels, r["seed"]
        splits = datasets.load(r["data"], size, channels, seed, **r["synthetic"])
        if prepared and str(splits.train.prepared) != prepared:
            raise datasets.DataError(
                f"{r['data']} has changed since the {self.trainer} model was trained on it, "
                f"and its prepared images ({prepared}) are gone: train it again"
            )
        return splits

    @property
    def framework(self) -> str:
        return TRAINER_FRAMEWORK[self.trainer]

    @property
    def weights(self) -> Path:
        return self.run_dir / WEIGHTS_FILE[self.framework]


def find(trainer: str, root: Path = CHECKPOINTS) -> Checkpoint:
    if trainer not in TRAINERS:
        raise CheckpointError(f"unknown trainer {trainer!r}; valid trainers: {', '.join(TRAINERS)}")
    run_dir = Path(root) / trainer
    spec_file = run_dir / SPEC_FILE
    ckpt = None
    if spec_file.exists():
        recorded = json.loads(spec_file.read_text())
        spec = CNNSpec.from_dict(recorded["spec"])
        labels = (run_dir / LABELS_FILE).read_text().split("\n")[: spec.num_classes]
        ckpt = Checkpoint(trainer, run_dir, spec, labels, recorded)
    if ckpt is None or not ckpt.weights.exists():
        raise CheckpointError(
            f"no {trainer} checkpoint in {run_dir}: run `make train` "
            f"(or `python -m train --trainer {trainer}`) first"
        )
    return ckpt


def load_torch(ckpt: Checkpoint):
    """The checkpoint as an eval-mode contract.torch_cnn.CNN on the CPU."""
    import torch

    from contract import torch_cnn  # the torch build imports torch

    net = torch_cnn.build(ckpt.spec)
    if ckpt.framework == "torch":
        state = torch.load(ckpt.weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
    else:
        transfer.keras_to_torch(load_keras(ckpt), net)
    return net.eval()


def load_keras(ckpt: Checkpoint):
    """The checkpoint as a Keras model (inference only: no optimiser, not compiled)."""
    import keras

    from contract import keras_cnn  # the Keras build imports TensorFlow

    if ckpt.framework == "keras":
        trained = keras.models.load_model(ckpt.weights, compile=False)
        model = keras_cnn.build(ckpt.spec)
        model.set_weights(trained.get_weights())
        return model
    model = keras_cnn.build(ckpt.spec)
    transfer.torch_to_keras(load_torch(ckpt), model)
    return model
