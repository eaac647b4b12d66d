"""Export any run's LeNet-5 to ONNX, built from the neutral weights, and run it with onnxruntime.

    python -m lenet5.onnx_export runs/tensorflow-max-relu-seed0-...          # -> .../model.onnx
    python -m lenet5.onnx_export model.npz -o lenet5.onnx

The graph is written with onnx.helper from model.npz (lenet5/weights.py), so one exporter serves
all three frameworks and needs none of them: Conv, the activation, MaxPool or AveragePool,
Flatten and Gemm, in the neutral (channels-first) layout. Input `images`: float32 (N, 1, 28, 28),
normalised as lenet5.data.normalize does, any N; output `logits`: (N, num_classes).
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import weights
from .cli import HelpFormatter, Parser, folder_problem, stops_cleanly
from .config import LEAKY_SLOPE
from .convert import ConvertError, load_weights
from .files import atomic_path, describe
from .runfolder import RunError

OPSET = 13  # every op used here is unchanged since; onnxruntime runs it everywhere
IR_VERSION = 7  # the IR of opset 13, so that older onnxruntime releases open the file too
INPUT, OUTPUT = "images", "logits"
POOL_OP = {"max": "MaxPool", "avg": "AveragePool"}
ACTIVATION_OP = {
    "relu": ("Relu", {}),
    "leakyrelu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
    "tanh": ("Tanh", {}),
    "sigmoid": ("Sigmoid", {}),
}


def build(params, meta):
    """An onnx.ModelProto of LeNet-5 with these weights and the architecture in `meta`, checked
    by onnx.checker."""
    params = weights.validate(params, meta)
    act_op, act_attrs = ACTIVATION_OP[meta["activation"]]
    nodes = []

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def act(x, name):
        return node(act_op, [x], f"{name}_act", **act_attrs)

    def pool(x, name):
        return node(POOL_OP[meta["pooling"]], [x], name, kernel_shape=[2, 2], strides=[2, 2])

    x = act(node("Conv", [INPUT, "c1.weight", "c1.bias"], "c1", kernel_shape=[5, 5], pads=[2, 2, 2, 2]), "c1")
    x = pool(x, "s2")
    x = pool(act(node("Conv", [x, "c3.weight", "c3.bias"], "c3", kernel_shape=[5, 5]), "c3"), "s4")
    x = act(node("Conv", [x, "c5.weight", "c5.bias"], "c5", kernel_shape=[5, 5]), "c5")
    x = node("Flatten", [x], "flatten", axis=1)  # (N, 120, 1, 1) -> (N, 120): no reordering needed
    x = act(node("Gemm", [x, "f6.weight", "f6.bias"], "f6", transB=1), "f6")
    nodes.append(helper.make_node("Gemm", [x, "output.weight", "output.bias"], [OUTPUT], name="output", transB=1))

    graph = helper.make_graph(
        nodes,
        "lenet5",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", meta["num_classes"]])],
        initializer=[numpy_helper.from_array(value, key) for key, value in params.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lenet5",
        ir_version=IR_VERSION,
        doc_string=f"LeNet-5, {meta['pooling']} pooling, {meta['activation']}, "
        f"trained with {meta.get('framework') or 'unknown'}",
    )
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def export(source, output=None):
    """Write `source`'s weights (a run folder or an .npz) as ONNX; returns (path, what was read).
    The default output is model.onnx in the run folder, or <name>.onnx beside <name>.npz; an
    existing file is never replaced."""
    source = Path(source)
    if output is None:
        output = source / "model.onnx" if source.is_dir() else source.with_suffix(".onnx")
    output = Path(output)
    if output.exists():
        raise ConvertError(f"{output} already exists; nothing was written (choose another -o)")
    problem = folder_problem(output.parent)
    if problem:
        raise ConvertError(f"-o {output}: its folder {output.parent}: {problem}")
    params, meta, what = load_weights(source)
    model = build(params, meta)
    with atomic_path(output, replace=False) as tmp:  # fails rather than replaces, should one appear meanwhile
        tmp.write_bytes(model.SerializeToString())
    return output, what


def session(model):
    """An onnxruntime InferenceSession on the CPU for an .onnx file, or an onnx.ModelProto."""
    import onnxruntime  # only for running, not for exporting

    model = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])


def onnx_logits(path_or_session, images, batch_size=1024):
    """Logits, float32 (N, num_classes), of an ONNX LeNet-5 (a path, or an onnxruntime session to
    reuse) for images normalised as lenet5.data.normalize does: (N, 1, 28, 28), or (N, 28, 28, 1)
    channels-last. Runs `batch_size` images at a time, so memory stays bounded for any N."""
    sess = path_or_session if hasattr(path_or_session, "run") else session(path_or_session)
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and images.shape[1:] == (28, 28, 1):
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (1, 28, 28):
        raise ValueError(f"images have shape {images.shape}; expected (N, 1, 28, 28) or (N, 28, 28, 1)")
    name = sess.get_inputs()[0].name
    return weights.batched(lambda x: sess.run(None, {name: x})[0], images, batch_size)


@stops_cleanly("python -m lenet5.onnx_export")
def main(argv=None):
    parser = Parser(
        prog="python -m lenet5.onnx_export", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("source", type=Path, help="a run folder (any framework, finished or not) or an .npz file")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="the .onnx file to write (default: model.onnx in the run folder, or <name>.onnx beside <name>.npz)",
    )
    args = parser.parse_args(argv)
    try:
        path, what = export(args.source, args.output)
    except (ConvertError, RunError, weights.WeightsError) as error:
        parser.error(str(error))
    except OSError as error:  # a full disk; or a file of the same name appeared meanwhile
        parser.exit(1, f"{parser.prog}: error: {describe(error)}\n")
    print(f"read {what}")
    print(f"wrote {path} (input {INPUT!r} float32 [N, 1, 28, 28], output {OUTPUT!r}, opset {OPSET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
