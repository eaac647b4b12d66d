"""The shape of every weight and bias of both networks, counted from the papers' layer sizes:
what each framework's model is tested against, what the weight files hold, what the figure draws."""

import math

from ..config import ARCHS, check_choice
from . import lecun98


def param_shapes(num_classes=10, arch="lenet5"):
    """The shape of every weight and bias of LeNet-5, from the paper's layer sizes, under the
    layer names all three models use, in PyTorch's layout (convolutions (out, in, 5, 5), dense
    layers (out, in)): what expected_num_params counts and lenet5.architecture draws."""
    if check_choice("architecture", arch, ARCHS) == "lecun98":
        return lecun98.param_shapes()
    convs = {"c1": (1, 6), "c3": (6, 16), "c5": (16, 120)}  # (in, out) channels, 5x5 kernels
    dense = {"f6": (120, 84), "output": (84, num_classes)}
    shapes = {}
    for name, (i, o) in convs.items():
        shapes.update({f"{name}.weight": (o, i, 5, 5), f"{name}.bias": (o,)})
    for name, (i, o) in dense.items():
        shapes.update({f"{name}.weight": (o, i), f"{name}.bias": (o,)})
    return shapes


def expected_num_params(num_classes=10, arch="lenet5"):
    """Trainable weights and biases, counted from the paper's layer sizes: 61,706 for LeNet-5 with
    10 classes, the paper's 60,000 for lecun98. Each framework's model is tested against this count."""
    if check_choice("architecture", arch, ARCHS) == "lecun98":
        return sum(lecun98.layer_params().values())
    return sum(math.prod(shape) for shape in param_shapes(num_classes).values())
