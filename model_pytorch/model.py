"""LeNet-5 in PyTorch, channels first (N, 1, 28, 28).

Kept parallel to model_tensorflow/ and model_mxnet/: the same layer names (c1, s2, c3, s4, c5,
f6, output), in the same order, with the same initialisation.
"""

import torch
from torch import nn

from lenet5.config import ACTIVATIONS, LEAKY_SLOPE, POOLINGS, check_choice

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
