"""LeNet-5 in PyTorch, channels first (N, 1, 28, 28): today's (LeNet5) and the 1998 paper's (LeCun98).

Kept parallel to model_tensorflow/ and model_mxnet/: the same layer names (c1, s2, c3, s4, c5,
f6, output), in the same order, with the same initialisation.
"""

import torch
import torch.nn.functional as F
from torch import nn

from lenet5.config import ACTIVATIONS, ARCHS, LEAKY_SLOPE, POOLINGS, check_choice
from lenet5.network import lecun98

POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
ACTIVATION = {
    "relu": nn.ReLU,
    "leakyrelu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class LeNet5(nn.Module):
    def __init__(self, num_classes=10, pooling="max", activation="relu", dropout=0.0):
        super().__init__()
        pool = POOLING[check_choice("pooling", pooling, POOLINGS)]
        self.act = ACTIVATION[check_choice("activation", activation, ACTIVATIONS)]()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)  # 6@28x28: padding 2 stands in for the paper's 32x32 input
        self.s2 = pool(2)  # 6@14x14
        self.c3 = nn.Conv2d(6, 16, 5)  # 16@10x10 (all 16 maps see all 6: no sparse table)
        self.s4 = pool(2)  # 16@5x5
        self.c5 = nn.Conv2d(16, 120, 5)  # 120@1x1
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)
        self.dropout = nn.Dropout(dropout)  # in training only: before F6 and before the output
        for layer in (self.c1, self.c3, self.c5, self.f6, self.output):
            # LeCun uniform, U(+-sqrt(3 / fan_in)), zero bias: the same in all three frameworks.
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="linear")
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = self.s2(self.act(self.c1(x)))
        x = self.s4(self.act(self.c3(x)))
        x = self.act(self.c5(x))
        x = self.act(self.f6(self.dropout(torch.flatten(x, 1))))
        return self.output(self.dropout(x))


class Squash(nn.Module):
    """The paper's squashing function, 1.7159 tanh(2a / 3)."""

    def forward(self, x):
        return lecun98.SQUASH_A * torch.tanh(lecun98.SQUASH_S * x)


class Subsampling(nn.Module):
    """S2 and S4: the sum of each 2x2 block, times one trainable coefficient per map, plus a bias."""

    def __init__(self, maps):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.empty(maps)), nn.Parameter(torch.empty(maps))

    def forward(self, x):
        return 4 * F.avg_pool2d(x, 2) * self.weight[:, None, None] + self.bias[:, None, None]


class TableConv2d(nn.Conv2d):
    """C3: a 5x5 convolution whose weights outside Table I are masked to zero, so get no gradient."""

    def __init__(self):
        super().__init__(6, 16, 5)
        self.register_buffer("mask", torch.from_numpy(lecun98.C3_MASK), persistent=False)

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class RBF(nn.Module):
    """The output: minus each unit's squared distance to its fixed bitmap (lenet5/network/lecun98.py)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(lecun98.RBF_CENTRES.copy()))

    def forward(self, x):
        return -((x[:, None, :] - self.weight) ** 2).sum(dim=2)


class LeCun98(nn.Module):
    """LeNet-5 as the paper built it (lenet5/network/lecun98.py): takes the same normalised images. Its
    output has the ten digits' bitmaps: num_classes is 10 (lenet5.training.run and lenet5.network.weights check it)."""

    def __init__(self, num_classes=10, dropout=0.0, init="fan-in"):
        super().__init__()
        self.act = Squash()
        self.c1 = nn.Conv2d(1, 6, 5)  # 6@28x28, from the 32x32 field
        self.s2 = Subsampling(6)  # 6@14x14
        self.c3 = TableConv2d()  # 16@10x10
        self.s4 = Subsampling(16)  # 16@5x5
        self.c5 = nn.Conv2d(16, 120, 5)  # 120@1x1
        self.f6 = nn.Linear(120, 84)
        self.output = RBF()
        self.dropout = nn.Dropout(dropout)  # in training only: before F6 and before the output
        with torch.no_grad():  # U(+-2.4 / fan-in), the paper's, or --init's: the same in all three frameworks
            for name, param in self.named_parameters():
                param.uniform_(-1, 1).mul_(torch.from_numpy(lecun98.init_bound(name, init)))

    def field(self, x):
        """The paper's input: background -0.1, ink 1.175, in a 32x32 field."""
        return F.pad(lecun98.SCALE * x + lecun98.OFFSET, (lecun98.PAD,) * 4, value=lecun98.BACKGROUND)

    def features(self, x):
        """F6's outputs, the RBF units' inputs."""
        x = self.act(self.s2(self.act(self.c1(self.field(x)))))
        x = self.act(self.s4(self.act(self.c3(x))))
        x = self.act(self.c5(x))
        return self.act(self.f6(self.dropout(torch.flatten(x, 1))))

    def forward(self, x):
        return self.output(self.dropout(self.features(x)))


def build(arch="lenet5", num_classes=10, pooling="max", activation="relu", dropout=0.0, init="fan-in"):
    """The model `arch` names (lenet5.config.ARCHS); lecun98 has its own subsampling, squashing and `init`."""
    if check_choice("architecture", arch, ARCHS) == "lecun98":
        return LeCun98(num_classes, dropout, init)
    return LeNet5(num_classes, pooling, activation, dropout)


def model_of(meta, dropout=0.0):
    """The model that a neutral weight file's meta (lenet5/network/weights.py) describes."""
    return build(meta["arch"], meta["num_classes"], meta["pooling"], meta["activation"], dropout)


def num_params(model):
    """Trainable parameters: C3's masked weights are not (lenet5/network/lecun98.py)."""
    masked = sum(int((m.mask == 0).sum()) for m in model.modules() if isinstance(m, TableConv2d))
    return sum(p.numel() for p in model.parameters()) - masked
