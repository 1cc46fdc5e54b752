"""Training: the three trainers' loops, the order of their data, distribution and lockstep.
The CNN they train (spec, builds, transfer) and the data it is trained on: `contract`."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) drowns the training log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before either framework: the bottom package loads triton first where both are installed
# (contract/__init__.py says why).
import contract  # noqa: F401
