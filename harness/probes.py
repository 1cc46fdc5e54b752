"""The CNN's probe points (contract/spec.py's `CNNSpec.probes`) read out of each runtime.

    capture(source, images) -> {probe name: float32 array [N, *probe.shape]}

A probe is found by what ends there, never by a layer name a converter may rewrite: the
k-th conv block's output is the k-th ReLU after a convolution (or a convolution whose ReLU
is fused into it), the k-th pool the k-th max-pool, `fc0` the hidden dense layer's ReLU,
`logits` the model's output. Every runtime's tensor comes back in the contract's layout
(NHWC feature maps) through `to_contract`, the one place that knows each runtime's layout:
PyTorch graphs and every ONNX graph hold NCHW (ONNX's Conv and MaxPool are NCHW by
definition, tf2onnx's graphs too), Keras and LiteRT NHWC. LiteRT's int8 tensors are
dequantized with their own scale and zero point.

Reachable: eager PyTorch (forward hooks), eager Keras (a sub-model on the layers' outputs),
ONNX Runtime (the probes' tensors added as outputs of a copy of the graph), LiteRT (every
tensor kept, XNNPACK off so no delegate hides them) and TorchScript (the file keeps the
CNN's modules, each with its compiled forward: they are called in the file's order, and the
logits they give must equal the file's own forward's). Not reachable, with the reason
`unreachable` gives: `.pt2` and `.pte` (compiled programs with no intermediate outputs to
ask for) and SavedModel (a traced function; its eager model is the Keras one, which is
probed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract.formats import FORMATS
from contract.names import PIXEL_MAX
from contract.spec import CNNSpec, Probe

NCHW, NHWC = "NCHW", "NHWC"

# By runner (contract/formats.py): why its inside cannot be read.
UNREACHABLE = {
    "aoti": "an AOTInductor package is compiled code: it returns only the logits",
    "executorch": "the .pte runs the whole CNN as one XNNPACK delegate call, and ExecuTorch's "
    "ETDump records intermediate outputs only outside delegates",
    "savedmodel": "a SavedModel signature returns only the logits (its eager Keras model is "
    "probed instead)",
}


class ProbeError(RuntimeError):
    """The graph does not hold the probe points the spec names (a different model)."""


def to_contract(values: np.ndarray, probe: Probe, layout: str) -> np.ndarray:
    """One probe's tensor in the contract's layout, float32 [N, *probe.shape]."""
    values = np.asarray(values, dtype=np.float32)
    if len(probe.shape) == 3 and layout == NCHW:
        values = values.transpose(0, 2, 3, 1)
    if values.shape[1:] != probe.shape:
        raise ProbeError(
            f"{probe.name}: the runtime's tensor has shape {list(values.shape)} ({layout}), "
            f"the spec's probe is [N, {', '.join(map(str, probe.shape))}]"
        )
    return np.ascontiguousarray(values)


def torch_probes(net, images: np.ndarray) -> dict[str, np.ndarray]:
    """Eager PyTorch (contract/torch_cnn.py's CNN): forward hooks on its ReLUs and pools."""
    import torch
    from torch import nn

    probes = net.spec.probes()
    blocks = [p for p in probes if p.kind == "block"]
    pools = [p for p in probes if p.kind == "pool"]
    relus = [m for m in net.features if isinstance(m, nn.ReLU)]
    maxpools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    hidden = next(m for m in net.head if isinstance(m, nn.ReLU))
    where = [*zip(blocks, relus, strict=True), *zip(pools, maxpools, strict=True)]
    where.append((next(p for p in probes if p.kind == "dense"), hidden))
    seen: dict[str, np.ndarray] = {}

    def keep(probe: Probe) -> Callable:
        layout = NCHW if len(probe.shape) == 3 else NHWC
        return lambda module, args, out: seen.__setitem__(
            probe.name, to_contract(out.detach().numpy().copy(), probe, layout)
        )

    handles = [module.register_forward_hook(keep(probe)) for probe, module in where]
    try:
        with torch.inference_mode():
            logits = net.eval()(torch.from_numpy(images)).numpy()
    finally:
        for handle in handles:
            handle.remove()
    seen["logits"] = to_contract(logits, probes[-1], NHWC)
    return {p.name: seen[p.name] for p in probes}


def keras_probes(model, spec: CNNSpec, images: np.ndarray) -> dict[str, np.ndarray]:
    """Eager Keras (contract/keras_cnn.py): one sub-model whose outputs are the probes'
    layers, by the names the build gives them."""
    import keras

    probes = spec.probes()
    names = {"block": "relu{}", "pool": "pool{}", "dense": "fc0", "logits": model.output.name}
    counters = {"block": 0, "pool": 0}
    outputs = []
    for probe in probes:
        if probe.kind in counters:
            name = names[probe.kind].format(counters[probe.kind])
            counters[probe.kind] += 1
        else:
            name = names[probe.kind]
        layer = model.get_layer(name) if probe.kind != "logits" else model.layers[-1]
        outputs.append(layer.output)
    inside = keras.Model(model.inputs, outputs)
    values = inside.predict_on_batch(images)
    return {p.name: to_contract(v, p, NHWC) for p, v in zip(probes, values, strict=True)}


def torchscript_probes(path: Path, spec: CNNSpec, images: np.ndarray) -> dict[str, np.ndarray]:
    """A TorchScript file (contract/torch_cnn.py's CNN, traced): its `features` and `head`
    modules run one by one, each by its own compiled forward, after the input scaling its
    forward applies; the logits are the whole forward's, and the modules' must equal them."""
    import torch

    module = torch.jit.load(str(path), map_location="cpu").eval()
    probes = spec.probes()
    kinds = {"ReLU": [p for p in probes if p.kind == "block"], "MaxPool2d": []}
    kinds["MaxPool2d"] = [p for p in probes if p.kind == "pool"]
    hidden = next(p for p in probes if p.kind == "dense")
    seen: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        batch = torch.from_numpy(images)
        x = (batch.permute(0, 3, 1, 2) / PIXEL_MAX - module.mean) / module.std
        for child in module.features.children():
            x = child(x)
            if kinds.get(child.original_name):
                probe = kinds[child.original_name].pop(0)
                seen[probe.name] = to_contract(x.numpy().copy(), probe, NCHW)
        for child in module.head.children():
            x = child(x)
            if child.original_name == "ReLU" and hidden.name not in seen:
                seen[hidden.name] = to_contract(x.numpy().copy(), hidden, NHWC)
        logits = module(batch).numpy()
    if len(seen) != len(probes) - 1 or not np.array_equal(x.numpy(), logits):
        raise ProbeError(
            f"{path}: its modules, called in order, do not give its forward's logits: "
            "not the CNN of contract/torch_cnn.py"
        )
    seen["logits"] = to_contract(logits, probes[-1], NHWC)
    return {p.name: seen[p.name] for p in probes}


def onnx_probes(path: Path, spec: CNNSpec, images: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime on a copy of the graph whose outputs are the probes' tensors."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    names = onnx_tensors(model.graph, spec)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(names, {session.get_inputs()[0].name: images})
    probes = spec.probes()
    return {
        p.name: to_contract(v, p, NCHW if p.kind != "logits" else NHWC)
        for p, v in zip(probes, values, strict=True)
    }


def onnx_tensors(graph, spec: CNNSpec) -> list[str]:
    """The names of the probes' tensors in an ONNX graph, in the spec's order: the ReLUs
    (blocks first, then the hidden layer's), the max-pools, the graph's output. In a QDQ
    file (onnx-int8) a tensor that is quantized is read after its QuantizeLinear ->
    DequantizeLinear pair, the value the next layer reads; and where the quantizer folded
    the ReLUs into those pairs (it does for a ReLU right after a Conv or Gemm: the
    quantization range starts at 0), the activations are those Convs' and the first Gemm's."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def settled(name: str) -> str:
        (quantize, *more) = consumers.get(name, [None])
        if more or quantize is None or quantize.op_type != "QuantizeLinear":
            return name
        (dequantize, *more) = consumers.get(quantize.output[0], [None])
        if more or dequantize is None or dequantize.op_type != "DequantizeLinear":
            return name
        return dequantize.output[0]

    def outputs(*ops: str) -> list[str]:
        return [n.output[0] for n in graph.node if n.op_type in ops]

    relus, pools = outputs("Relu"), outputs("MaxPool")
    probes = spec.probes()
    blocks = sum(p.kind == "block" for p in probes)
    want_pools = sum(p.kind == "pool" for p in probes)
    if not relus and outputs("QuantizeLinear"):
        relus = outputs("Conv") + outputs("Gemm", "MatMul")[:1]
    if len(relus) != blocks + 1 or len(pools) != want_pools:
        raise ProbeError(
            f"the ONNX graph has {len(relus)} Relu and {len(pools)} MaxPool nodes; the spec's "
            f"CNN has {blocks + 1} and {want_pools}"
        )
    found, relu, pool = [], iter(relus), iter(pools)
    for probe in probes:
        if probe.kind == "logits":
            found.append(graph.output[0].name)
        else:
            found.append(settled(next(pool) if probe.kind == "pool" else next(relu)))
    return found


def lite_tensors(interpreter, spec: CNNSpec) -> list[dict]:
    """The probes' tensors of a LiteRT graph, in the spec's order: each CONV_2D's output
    (or the RELU after it where the ReLU is not fused), each MAX_POOL_2D's, the first
    FULLY_CONNECTED's (or its RELU), the graph's output."""
    ops = interpreter._get_ops_details()  # the one listing LiteRT gives of its graph
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    after = {}  # tensor index -> the RELU op that consumes it
    for op in ops:
        if op["op_name"] == "RELU":
            after[op["inputs"][0]] = op["outputs"][0]
    convs = [after.get(o["outputs"][0], o["outputs"][0]) for o in ops if o["op_name"] == "CONV_2D"]
    pools = [o["outputs"][0] for o in ops if o["op_name"] == "MAX_POOL_2D"]
    denses = [o["outputs"][0] for o in ops if o["op_name"] == "FULLY_CONNECTED"]
    probes = spec.probes()
    blocks = sum(p.kind == "block" for p in probes)
    if len(convs) != blocks or len(pools) != sum(p.kind == "pool" for p in probes) or not denses:
        raise ProbeError(
            f"the LiteRT graph has {len(convs)} CONV_2D, {len(pools)} MAX_POOL_2D and "
            f"{len(denses)} FULLY_CONNECTED ops; the spec's CNN has {blocks} convolutions"
        )
    output = interpreter.get_output_details()[0]["index"]
    found, conv, pool = [], iter(convs), iter(pools)
    for probe in probes:
        index = {
            "block": lambda: next(conv),
            "pool": lambda: next(pool),
            "dense": lambda: after.get(denses[0], denses[0]),
            "logits": lambda: output,
        }[probe.kind]()
        found.append(details[index])
    return found


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """An int8/uint8 tensor in real numbers, by its own scale and zero point."""
    if values.dtype.kind not in "iu" or not detail["quantization"][0]:
        return values.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


def lite_probes(path: Path, spec: CNNSpec, images: np.ndarray) -> dict[str, np.ndarray]:
    """LiteRT with every tensor kept and the default delegate off, one image at a time
    resized to the batch."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    source = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(source, images.shape, strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source, images)
    interpreter.invoke()
    probes = spec.probes()
    values = {}
    for probe, detail in zip(probes, lite_tensors(interpreter, spec), strict=True):
        raw = dequantize(interpreter.get_tensor(detail["index"]), detail)
        values[probe.name] = to_contract(raw, probe, NHWC)
    return values


# By runner (contract/formats.py): how to read a variant's probes.
CAPTURE: dict[str, Callable[[Path, CNNSpec, np.ndarray], dict[str, np.ndarray]]] = {
    "torchscript": torchscript_probes,
    "onnxruntime": onnx_probes,
    "litert": lite_probes,
}


def unreachable(fmt: str) -> str:
    """Why a format's probes cannot be read ("" where they can)."""
    runner = FORMATS[fmt].runner
    return "" if runner in CAPTURE else UNREACHABLE.get(runner, f"no probe reader for {runner}")


def capture(path: Path, fmt: str, spec: CNNSpec, images: np.ndarray) -> dict[str, np.ndarray]:
    """A variant's artifact's probes (`unreachable(fmt)` must be empty)."""
    reason = unreachable(fmt)
    if reason:
        raise ProbeError(f"{fmt}: {reason}")
    return CAPTURE[FORMATS[fmt].runner](path, spec, images)
