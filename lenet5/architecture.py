"""Draw LeNet-5 in the style of the paper's figure 2, from the model definition itself.

    python -m lenet5.architecture                    # writes LeNet_architecture.png in the project
    python -m lenet5.architecture --arch lecun98     # the 1998 paper's, with Table I: LeNet_architecture_lecun98.png
    python -m lenet5.architecture -o arch.png --num-classes 26

Nothing in the figure is typed in: the feature-map sizes come from running the numpy reference
(lenet5/network/reference.py) on a blank image, the kernel sizes and parameter counts from the weight
shapes every framework's model is tested against (lenet5.network.shapes.param_shapes), the padding and
the pooling windows from how the sizes change.
"""

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .arguments import HelpFormatter, Parser, positive_int, prog
from .config import ARCH_NAMES, ARCHS, POOLINGS, ROOT
from .network import lecun98, reference
from .network.shapes import param_shapes
from .plot import is_ours

DEFAULT_OUTPUT = {"lenet5": ROOT / "LeNet_architecture.png", "lecun98": ROOT / "LeNet_architecture_lecun98.png"}
MAKER = "lenet5.architecture"
INPUT_SHAPE = (1, 28, 28)  # channels, height, width: MNIST as the models see it
COLORS = {"input": "#e8e8e8", "convolution": "#9ecae1", "pooling": "#fdd0a2", "dense": "#a1d99b", "rbf": "#d4b9da"}


def layer_table(num_classes=10, pooling="max", input_shape=INPUT_SHAPE, arch="lenet5"):
    """One dict per layer, input to output: name (C1...), key (c1...), kind, shape (of one
    image's output), kernel (height, width) or pooling window, padding, params. lecun98's input
    is the paper's 32x32 field, which its model makes from the 28x28 image."""
    shapes = param_shapes(num_classes, arch)
    params = {name: np.zeros(shape) for name, shape in shapes.items()}
    field = (1, *(n + 2 * lecun98.PAD for n in input_shape[1:])) if arch == "lecun98" else tuple(input_shape)
    rows = [dict(name="INPUT", key="input", kind="input", shape=field, kernel=None, padding=0, params=0)]
    counts = lecun98.layer_params() if arch == "lecun98" else {}
    for key, out in reference.trace(params, np.zeros((1, *input_shape)), pooling, arch=arch):
        shape, before = out.shape[1:], rows[-1]["shape"]
        row = dict(name=key.upper(), key=key, shape=shape, kernel=None, padding=0, params=0)
        if key in ("s2", "s4"):  # subsampling: the window is what the size shrank by
            row.update(kind="pooling", kernel=(before[1] // shape[1], before[2] // shape[2]))
            row["params"] = counts.get(key, 0)  # lecun98's coefficient and bias per map
        elif arch == "lecun98" and key == "output":
            row.update(kind="rbf")  # fixed bitmaps: no parameters
        else:
            weight = shapes[f"{key}.weight"]
            row["params"] = counts.get(key) or math.prod(weight) + math.prod(shapes[f"{key}.bias"])
            if len(weight) == 4:  # out = in + 2 * padding - kernel + 1
                row.update(kind="convolution", kernel=weight[2:], padding=(shape[1] - before[1] + weight[2] - 1) // 2)
            else:
                row["kind"] = "dense"
        rows.append(row)
    return rows


def describe(row, pooling="max", arch="lenet5"):
    """The lines under a layer in the figure: what it does and its parameter count."""
    if row["kind"] == "input":
        return "image" if arch == "lenet5" else "image in a\n32x32 field"
    k = "x".join(map(str, row["kernel"] or ()))
    paper = arch == "lecun98"
    what = {
        "convolution": f"conv {k}"
        + (f", pad {row['padding']}" if row["padding"] else "")
        + (", Table I" if paper and row["key"] == "c3" else ""),
        "pooling": f"{k} sum x coef\n+ bias" if paper else f"{pooling} pool {k}",
        "dense": "full connection",
        "rbf": "Euclidean RBF,\n7x12 bitmaps",
    }[row["kind"]]
    return f"{what}\n{row['params']:,} params" if row["params"] else f"{what}\nno params"


def size_label(shape):
    return f"{shape[0]}@{shape[1]}x{shape[2]}" if len(shape) == 3 else f"{shape[0]}"


def figure(rows, pooling="max", arch="lenet5"):
    """The classic drawing: stacks of feature maps as boxes, vectors of units as columns, a
    kernel's receptive field joined to the unit it feeds, fans for the full connections; for
    lecun98, C3's connection table (the paper's Table I) below."""
    paper = arch == "lecun98"
    fig = Figure(figsize=(16, 7.4 if paper else 4.6), layout="constrained")
    ax, table_ax = fig.subplots(2, 1, height_ratios=(4.6, 2.6)) if paper else (fig.subplots(), None)
    pixel, gap = 0.12, 2.3  # drawing units per image pixel; space between layers
    x, boxes = 0.0, []
    for row in rows:
        shape = row["shape"]
        if len(shape) == 3 and shape[1] > 1:  # feature maps: a stack of squares, the back ones up and right
            count, side = shape[0], shape[1] * pixel
            step = min(0.22, 2.2 / count)
            width = height = side + (count - 1) * step
            for i in reversed(range(count)):
                ax.add_patch(
                    Rectangle(
                        (x + i * step, -height / 2 + i * step),
                        side,
                        side,
                        facecolor=COLORS[row["kind"]],
                        edgecolor="#333333",
                        linewidth=0.7,
                    )
                )
            box = dict(maps=(x, -height / 2, side))  # the front map: left, bottom, side
        else:  # a vector of units (C5's 120 maps are 1x1): a column that grows with the unit count
            width, height = 0.45, min(max(shape[0] * 0.05, 1.2), 6.0)
            ax.add_patch(
                Rectangle(
                    (x, -height / 2), width, height, facecolor=COLORS[row["kind"]], edgecolor="#333333", linewidth=0.9
                )
            )
            box = dict(maps=None)
        boxes.append(dict(box, left=x, right=x + width, top=height / 2))
        ax.text(
            x + width / 2,
            3.3,
            f"{row['name']}\n{size_label(shape)}",
            ha="center",
            va="bottom",
            fontsize=11,
            fontweight="bold" if row["params"] else "normal",
        )
        ax.text(x + width / 2, -3.3, describe(row, pooling, arch), ha="center", va="top", fontsize=9.5, color="#333333")
        x += width + gap

    red = "#c0392b"
    for src, dst, row in zip(boxes, boxes[1:], rows[1:]):
        if src["maps"]:  # a kernel-sized patch of the previous maps feeds one unit of the next layer
            sx, sy, side = src["maps"]
            k = row["kernel"][0] * pixel
            px, py = sx + (side - k) * 0.6, sy + (side - k) * 0.6
            if dst["maps"]:
                dx, dy, dside = dst["maps"]
                ux, uy = dx + (dside - pixel) * 0.6, dy + (dside - pixel) * 0.6
            else:
                ux, uy = dst["left"], -pixel / 2
            ax.add_patch(Rectangle((px, py), k, k, fill=False, edgecolor=red, linewidth=1.2, zorder=3))
            for cx, cy in ((px, py), (px, py + k), (px + k, py), (px + k, py + k)):
                ax.plot([cx, ux + pixel / 2], [cy, uy + pixel / 2], color=red, linewidth=0.6, zorder=3)
            ax.add_patch(Rectangle((ux, uy), pixel, pixel, facecolor=red, edgecolor="none", zorder=3))
        else:  # full connection: every unit of one layer to every unit of the next
            for a in (src["top"], -src["top"]):
                for b in (dst["top"], -dst["top"]):
                    ax.plot([src["right"], dst["left"]], [a, b], color="#888888", linewidth=0.5, zorder=0)
    total = sum(row["params"] for row in rows)
    ax.set_title(f"{ARCH_NAMES[arch]}: {total:,} parameters", fontsize=14)
    ax.set_xlim(-0.4, x - gap + 0.4)
    ax.set_ylim(-4.6, 4.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if table_ax is not None:
        connection_table(table_ax)
    return fig


def connection_table(ax):
    """Table I: which S2 maps (rows) each C3 map (columns) takes, an X where connected."""
    maps, inputs = lecun98.CONNECTED.shape
    ax.imshow(lecun98.CONNECTED.T, cmap="Blues", vmin=0, vmax=1.6, aspect="equal")
    for m, s in np.argwhere(lecun98.CONNECTED):
        ax.text(m, s, "X", ha="center", va="center", fontsize=10, fontweight="bold")
    ax.set_xticks(range(maps))
    ax.set_yticks(range(inputs))
    ax.set_xticks(np.arange(-0.5, maps), minor=True)
    ax.set_yticks(np.arange(-0.5, inputs), minor=True)
    ax.grid(which="minor", color="#888888", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("C3 feature map")
    ax.set_ylabel("S2 feature map")
    ax.set_title("C3's connections to S2 (the paper's Table I)", fontsize=12)


def main(argv=None):
    parser = Parser(
        prog=prog("lenet5.architecture"), description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=f"the PNG to write (default: {DEFAULT_OUTPUT['lenet5'].name}, or {DEFAULT_OUTPUT['lecun98'].name} "
        "for lecun98, in the project); one this command wrote before is replaced, any other file never",
    )
    parser.add_argument("--arch", choices=ARCHS, default="lenet5", help="today's LeNet-5, or the 1998 paper's")
    parser.add_argument("--num-classes", type=positive_int, default=10, metavar="N", help="units of the output layer")
    parser.add_argument("--pooling", choices=POOLINGS, default="max", help="subsampling in S2 and S4")
    args = parser.parse_args(argv)
    if args.arch == "lecun98" and args.num_classes != lecun98.NUM_CLASSES:
        parser.error(f"--num-classes {args.num_classes}: lecun98's RBF output has the ten digits' bitmaps")
    output = Path(args.output or DEFAULT_OUTPUT[args.arch])
    if output.suffix.lower() != ".png":
        parser.error(f"-o {output}: the figure is a PNG; name a .png file")
    if output.exists() and not is_ours(output, MAKER):
        parser.error(f"-o {output}: exists and was not made by {MAKER}; choose another file")
    rows = layer_table(args.num_classes, args.pooling, arch=args.arch)
    try:
        figure(rows, args.pooling, args.arch).savefig(output, dpi=120, metadata={"Software": MAKER})
    except OSError as error:
        sys.exit(f"{parser.prog}: error: cannot write {output} ({error.strerror or error})")
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
