"""The harness: one Backend per variant under one I/O contract, the parity gate, its report.

    from harness import load, eager
    model = load("artifacts/model_repository/torch.tflite-int8")   # sha256 checked first
    logits = model.predict(images)      # float32 [N, H, W, C] 0..255 -> float32 [N, K]
    reference = eager("torch")          # the trained model itself

`python -m harness.parity` (make parity) runs the gate over a model repository.
"""

from harness.backend import (
    Backend,
    ContractError,
    VariantError,
    eager,
    load,
    softmax,
    top_k,
)

__all__ = ["Backend", "ContractError", "VariantError", "eager", "load", "softmax", "top_k"]
