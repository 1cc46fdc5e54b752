"""Export every trained checkpoint to every deployment format, in Triton's repository layout.

`export.repository` (layout, manifests, `verify`) imports no ML framework; the
exporters import torch / TensorFlow lazily.
"""
