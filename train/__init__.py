"""Training: the one CNN (spec, PyTorch and Keras builds, weight transfer), data, trainers."""

import importlib.util
import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) drowns the training log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The GPU install (docs/training.md, "Keras on the GPU") has torch's triton beside TensorFlow, whose
# wheels (>= 2.20) load their LLVM into the global symbol table: a later `import triton`
# (torch does it on its first optimiser) then crashes with SIGSEGV. Loaded first, triton
# keeps its own LLVM and TensorFlow then loads fine. Every module of the project imports
# `train` before either framework.
if importlib.util.find_spec("triton") and importlib.util.find_spec("tensorflow"):
    import triton  # noqa: F401
