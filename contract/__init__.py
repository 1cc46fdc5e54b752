"""The contract every stage shares, below all of them: it imports no stage.

    names.py       the I/O tensors, pixel range, labels file, trainers, variant naming
    paths.py       where the artifacts live; the one --repository flag
    formats.py     one record per deployment format
    spec.py        CNNSpec: what the one CNN is
    torch_cnn.py   its PyTorch build (imports torch)
    keras_cnn.py   its Keras build (imports keras), with keras_batchnorm.py
    transfer.py    the exact weight transfer between the two builds
    checkpoint.py  a trained checkpoint, read back as either build
    datasets.py    the data a checkpoint is trained on, and its one split
    pixels.py      an image as the contract's pixels
    files.py       writing a file so that no reader sees half of it

Importing the package or any module but the two builds imports no ML framework.
"""

import importlib.util

# The GPU install (docs/training.md, "Keras on the GPU") has torch's triton beside
# TensorFlow, whose wheels (>= 2.20) load their LLVM into the global symbol table: a later
# `import triton` (torch does it on its first optimiser, AOTInductor on loading a package)
# then crashes with SIGSEGV. Loaded first, triton keeps its own LLVM and TensorFlow then
# loads fine. Here, not in the torch build: TensorFlow may load before any torch model is
# built (the Keras references, a SavedModel runner), and every stage imports this package
# before either framework.
if importlib.util.find_spec("triton") and importlib.util.find_spec("tensorflow"):
    import triton  # noqa: F401
