"""Training: the one CNN (spec, PyTorch and Keras builds, weight transfer), data, trainers."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) drowns the training log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
