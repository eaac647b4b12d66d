"""LeNet-5 as LeCun, Bottou, Bengio and Haffner built it (1998, Section II-B): `--arch lecun98`.

What every framework's lecun98 model, the numpy reference and the ONNX exporter share, in numpy:
the input scaling, the squashing function, C3's connection table (the paper's Table I), the RBF
output's bitmaps (after the paper's Fig. 3), the initialisation and the MAP loss's constant; its
learning-rate schedule is lenet5.config's, its optimizer lenet5/network/sdlm.py. The arrays are in the
neutral layout (lenet5/network/weights.py).

Two choices the paper leaves open, made here:
- C3 is a full 16x6 convolution whose weights outside Table I are held at zero (a fixed mask in
  the forward pass, so they get no gradient); they are not parameters, and not counted.
- The output is minus the RBF units' outputs, -y_i: the smallest y_i is then the largest
  output, and everything that reads logits (argmax, softmax, predict, plot) reads the paper's
  decision. softmax(-y) is the paper's posterior; the MAP loss is the cross-entropy over the
  ten outputs and an eleventh, constant one, -J (the "rubbish" class): see map_loss.
"""

import numpy as np

from ..config import INITS, check_choice
from ..data.splits import MEAN, STD

# Input: background -0.1, ink 1.175 (a mean near 0, a variance near 1), in a 32x32 field.
BACKGROUND, INK = -0.1, 1.175
PAD = 2  # 28x28 digits centred in 32x32: C1's 5x5 kernels then leave 28x28 maps
# The project's images arrive normalised as lenet5.data.splits.normalize does: x = (p - MEAN) / STD for
# pixels p in [0, 1]. The paper's value BACKGROUND + (INK - BACKGROUND) p is then SCALE x + OFFSET.
SCALE = (INK - BACKGROUND) * STD
OFFSET = (INK - BACKGROUND) * MEAN + BACKGROUND

# The squashing function f(a) = A tanh(S a): f(1) = 1, f(-1) = -1, the steepest gain near 1.
SQUASH_A, SQUASH_S = 1.7159, 2 / 3

# Table I: the S2 maps each C3 map takes. 0-5: three neighbours; 6-11: four neighbours;
# 12-14: four non-neighbours; 15: all six.
TABLE = (
    *((i, (i + 1) % 6, (i + 2) % 6) for i in range(6)),
    *((i, (i + 1) % 6, (i + 2) % 6, (i + 3) % 6) for i in range(6)),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    tuple(range(6)),
)
CONNECTED = np.zeros((16, 6), bool)  # CONNECTED[c3 map, s2 map]
for _map, _inputs in enumerate(TABLE):
    CONNECTED[_map, list(_inputs)] = True
C3_MASK = np.broadcast_to(CONNECTED[:, :, None, None], (16, 6, 5, 5)).astype(np.float32)  # c3.weight's layout

# The RBF units' parameter vectors: a 7x12 bitmap of each digit, +1 ink and -1 paper, drawn after
# the paper's Fig. 3 (its glyphs of the ASCII set); F6's 84 units are the bitmap row by row.
GLYPHS = """
.......|.......|.......|.......|.......|.......|.......|.......|.......|.......
..###..|...#...|..###..|..###..|.....#.|.#####.|...##..|.#####.|..###..|..###..
.#...#.|..##...|.#...#.|.#...#.|....##.|.#.....|..#....|.....#.|.#...#.|.#...#.
.#...#.|.#.#...|.....#.|.....#.|...#.#.|.#.....|.#.....|.....#.|.#...#.|.#...#.
.#...#.|...#...|.....#.|.....#.|..#..#.|.####..|.#.....|....#..|.#...#.|.#...#.
.#...#.|...#...|....#..|...##..|.#...#.|.....#.|.####..|....#..|..###..|..####.
.#...#.|...#...|...#...|.....#.|.######|.....#.|.#...#.|...#...|.#...#.|.....#.
.#...#.|...#...|..#....|.....#.|.....#.|.....#.|.#...#.|...#...|.#...#.|.....#.
.#...#.|...#...|.#.....|.#...#.|.....#.|.#...#.|.#...#.|..#....|.#...#.|....#..
..###..|.#####.|.#####.|..###..|.....#.|..###..|..###..|..#....|..###..|..##...
.......|.......|.......|.......|.......|.......|.......|.......|.......|.......
.......|.......|.......|.......|.......|.......|.......|.......|.......|.......
"""
BITMAP_SHAPE = (12, 7)  # rows, columns
BITMAPS = np.array(
    [[[1.0 if c == "#" else -1.0 for c in row.split("|")[d]] for row in GLYPHS.split()] for d in range(10)],
    np.float32,
)  # (10, 12, 7)
RBF_CENTRES = BITMAPS.reshape(10, -1)  # output.weight: (10 classes, 84 F6 units)
NUM_CLASSES = len(BITMAPS)  # bitmaps exist for the ten digits only

# The MAP criterion: E = y_D + log(exp(-J) + sum_i exp(-y_i)); the paper leaves J's value open.
J = 0.1

LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "output")
SUBSAMPLING = ("s2", "s4")  # each 2x2 block summed, times one coefficient per map, plus a bias


def param_shapes():
    """{name: shape} of every array of lecun98 in the neutral layout (PyTorch's)."""
    return {
        "c1.weight": (6, 1, 5, 5),
        "c1.bias": (6,),
        "s2.weight": (6,),  # one coefficient per map, times the sum of each 2x2 block
        "s2.bias": (6,),
        "c3.weight": (16, 6, 5, 5),  # zero outside Table I (C3_MASK)
        "c3.bias": (16,),
        "s4.weight": (16,),
        "s4.bias": (16,),
        "c5.weight": (120, 16, 5, 5),
        "c5.bias": (120,),
        "f6.weight": (84, 120),
        "f6.bias": (84,),
        "output.weight": (NUM_CLASSES, 84),  # the RBF centres: fixed, not trained
    }


def layer_params():
    """Trainable parameters of each layer, as the paper counts them: C3's 1,516 from Table I."""
    shapes = param_shapes()
    count = {name: 0 for name in LAYERS}
    for key, shape in shapes.items():
        name = key.split(".")[0]
        if key == "c3.weight":
            count[name] += int(C3_MASK.sum())
        elif key != "output.weight":
            count[name] += int(np.prod(shape))
    return count


def fan_in(key):
    """The inputs of each unit a parameter belongs to, broadcastable to its shape: the paper's F_i.
    A subsampling unit sums 4 inputs; a C3 unit sees 25 per S2 map that Table I gives it."""
    name, shape = key.split(".")[0], param_shapes()[key]
    if name in SUBSAMPLING:
        return np.full(shape, 4.0)
    if name == "c3":
        per_map = CONNECTED.sum(axis=1) * 25.0  # (16,)
        return per_map[:, None, None, None] if key.endswith("weight") else per_map
    inputs = {"c1": 25, "c5": 16 * 25, "f6": 120}[name]
    return np.full(shape, float(inputs))


def init_bound(key, init="fan-in"):
    """The initialisation's bound of each entry (zero for C3's unconnected weights): a framework
    draws U(-1, 1) and multiplies by it.

    fan-in: the paper's U(-2.4 / F_i, 2.4 / F_i) everywhere (Appendix A). It assumes a weighted
    sum's spread grows like F_i, as it does for highly correlated inputs under one weight. Under
    C1's, C3's, C5's and F6's weights, of random signs, it grows like sqrt(F_i) whatever the
    inputs, so the paper's bound shrinks their sums layer by layer (C5's to about 0.01).
    sqrt-fan-in divides by sqrt(F_i) instead, the subsampling coefficients too, read as Section
    II-A writes them: a coefficient of the average of the F_i inputs, 2.4 / sqrt(F_i) there, so
    2.4 / (F_i sqrt(F_i)) on the sum S2 and S4 take (II-B). Their biases keep 2.4 / F_i. Then
    every layer's weighted sums start in the squashing's working range, Appendix A's aim
    (docs/lecun98.md, "Why the paper's learning rates diverged")."""
    name, param = key.split(".")
    n = fan_in(key)
    if check_choice("initialisation", init, INITS) == "fan-in" or (name in SUBSAMPLING and param == "bias"):
        bound = 2.4 / n
    elif name in SUBSAMPLING:  # a coefficient of the average (II-A), applied to the sum (II-B)
        bound = 2.4 / np.sqrt(n) / n
    else:
        bound = 2.4 / np.sqrt(n)
    bound = bound * np.ones(param_shapes()[key])
    return (bound * C3_MASK if key == "c3.weight" else bound).astype(np.float32)


def check_table(c3_weight, source="weights"):
    """Raise ValueError if c3.weight has weights where Table I has no connection."""
    stray = np.abs(np.asarray(c3_weight)) * (1 - C3_MASK)
    if stray.any():
        m, s = np.argwhere(stray.sum(axis=(2, 3)))[0]
        raise ValueError(f"{source}: c3.weight connects C3 map {m} to S2 map {s}, which Table I leaves unconnected")


def squash(a):
    return SQUASH_A * np.tanh(SQUASH_S * a)


def squash_gain(x):
    """f'(a) from the unit's output x = f(a), A S (1 - tanh^2(S a)): plain arithmetic, so numpy
    arrays and every framework's tensors take it alike."""
    return SQUASH_S * (SQUASH_A - x * x / SQUASH_A)


def map_loss(outputs, labels):
    """The paper's MAP loss, per sample, from the model's outputs (-y, as above) in numpy: the
    yardstick the frameworks' losses are tested against."""
    y = -np.asarray(outputs, np.float64)
    return y[np.arange(len(y)), labels] + np.log(np.exp(-J) + np.exp(-y).sum(axis=1))
