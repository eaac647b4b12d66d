"""Export any run's LeNet-5 to ONNX, built from the neutral weights, and run it with onnxruntime.

    python -m lenet5.onnx_export runs/tensorflow-max-relu-seed0-...          # -> .../model.onnx
    python -m lenet5.onnx_export model.npz -o lenet5.onnx

The graph is written with onnx.helper from model.npz (lenet5/network/weights.py), so one exporter serves
all three frameworks and needs none of them: Conv, the activation, MaxPool or AveragePool,
Flatten and Gemm, in the neutral (channels-first) layout. Input `images`: float32 (N, 1, 28, 28),
normalised as lenet5.data.splits.normalize does, any N; output `logits`: (N, num_classes).
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .arguments import HelpFormatter, Parser, folder_problem, prog
from .config import LEAKY_SLOPE
from .convert import ConvertError, load_weights
from .files import atomic_path, describe
from .network import lecun98, weights
from .training.runfolder import RunError
from .training.stopping import stops_cleanly

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
    nodes = []

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    if meta["arch"] == "lecun98":
        params = lecun98_graph(params, node)
    else:
        lenet5_graph(meta, node)
    return finish(nodes, params, meta)


def lenet5_graph(meta, node):
    """Today's LeNet-5: the nodes from the images to the logits."""
    act_op, act_attrs = ACTIVATION_OP[meta["activation"]]

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
    node("Gemm", [x, "output.weight", "output.bias"], OUTPUT, transB=1)


def lecun98_graph(params, node):
    """The 1998 paper's network (lenet5/network/lecun98.py): the nodes from the images to the logits;
    returns the initializers, the subsampling coefficients shaped (maps, 1, 1) to broadcast."""
    consts = {
        "scale": np.float32(lecun98.SCALE),
        "offset": np.float32(lecun98.OFFSET),
        "pads": np.array([0, 0, lecun98.PAD, lecun98.PAD, 0, 0, lecun98.PAD, lecun98.PAD], np.int64),
        "background": np.float32(lecun98.BACKGROUND),
        "squash_s": np.float32(lecun98.SQUASH_S),
        "squash_a": np.float32(lecun98.SQUASH_A),
        "four": np.float32(4),
        "axis_1": np.array([1], np.int64),
        "axis_2": np.array([2], np.int64),
    }

    def squash(x, name):
        return node(
            "Mul",
            [node("Tanh", [node("Mul", [x, "squash_s"], f"{name}_s")], f"{name}_tanh"), "squash_a"],
            f"{name}_act",
        )

    def subsample(x, name):
        x = node(
            "Mul", [node("AveragePool", [x], f"{name}_avg", kernel_shape=[2, 2], strides=[2, 2]), "four"], f"{name}_sum"
        )
        return squash(node("Add", [node("Mul", [x, f"{name}.weight"], f"{name}_mul"), f"{name}.bias"], name), name)

    def conv(x, name):
        return squash(node("Conv", [x, f"{name}.weight", f"{name}.bias"], name, kernel_shape=[5, 5]), name)

    x = node("Add", [node("Mul", [INPUT, "scale"], "input_scale"), "offset"], "input_offset")
    x = node("Pad", [x, "pads", "background"], "input_field", mode="constant")  # 32x32, background -0.1
    x = subsample(conv(x, "c1"), "s2")
    x = subsample(conv(x, "c3"), "s4")  # c3.weight is zero outside Table I (weights.validate checks)
    x = node("Flatten", [conv(x, "c5")], "flatten", axis=1)
    x = squash(node("Gemm", [x, "f6.weight", "f6.bias"], "f6", transB=1), "f6")
    diff = node("Sub", [node("Unsqueeze", [x, "axis_1"], "f6_rows"), "output.weight"], "output_diff")
    distance = node("ReduceSum", [node("Mul", [diff, diff], "output_sq"), "axis_2"], "output_rbf", keepdims=0)
    node("Neg", [distance], OUTPUT)  # minus the RBF outputs: the largest is the paper's class
    shaped = {
        k: v.reshape(-1, 1, 1) if k in ("s2.weight", "s2.bias", "s4.weight", "s4.bias") else v
        for k, v in params.items()
    }
    return {**shaped, **consts}


def finish(nodes, params, meta):
    """The checked onnx.ModelProto of these nodes and initializers."""
    graph = helper.make_graph(
        nodes,
        meta["arch"],
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", meta["num_classes"]])],
        initializer=[numpy_helper.from_array(np.asarray(value), key) for key, value in params.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lenet5",
        ir_version=IR_VERSION,
        doc_string=(
            "LeNet-5 of 1998 (lecun98)"
            if meta["arch"] == "lecun98"
            else f"LeNet-5, {meta['pooling']} pooling, {meta['activation']}"
        )
        + f", trained with {meta.get('framework') or 'unknown'}",
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
    reuse) for images normalised as lenet5.data.splits.normalize does: (N, 1, 28, 28), or (N, 28, 28, 1)
    channels-last. Runs `batch_size` images at a time, so memory stays bounded for any N."""
    sess = path_or_session if hasattr(path_or_session, "run") else session(path_or_session)
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and images.shape[1:] == (28, 28, 1):
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (1, 28, 28):
        raise ValueError(f"images have shape {images.shape}; expected (N, 1, 28, 28) or (N, 28, 28, 1)")
    name = sess.get_inputs()[0].name
    return weights.batched(lambda x: sess.run(None, {name: x})[0], images, batch_size)


@stops_cleanly(prog("lenet5.onnx_export"))
def main(argv=None):
    parser = Parser(
        prog=prog("lenet5.onnx_export"), description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
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
