"""LeNet-5 in MXNet Gluon, channels first (N, 1, 28, 28), as a HybridBlock.

Kept parallel to model_pytorch/ and model_tensorflow/: the same layer names (c1, s2, c3, s4, c5,
f6, output), in the same order, with the same initialisation.
"""

try:
    import mxnet as mx
    from mxnet.gluon import HybridBlock, nn
except Exception as error:  # MXNet 1.9.1 dies on import with numpy >= 1.24 (np.bool is gone)
    raise ImportError(
        f"cannot import MXNet ({type(error).__name__}: {error}). MXNet 1.9.1, its last release, "
        "needs Python <= 3.11 and numpy < 1.24: use its own environment, "
        "`make env-mxnet` or `pip install -r requirements/mxnet.txt` (which pins numpy==1.23.5)"
    ) from None

from lenet5.config import ACTIVATIONS, LEAKY_SLOPE, POOLINGS, check_choice

POOLING = {"max": nn.MaxPool2D, "avg": nn.AvgPool2D}
ACTIVATION = {
    "relu": lambda: nn.Activation("relu"),
    "leakyrelu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "tanh": lambda: nn.Activation("tanh"),
    "sigmoid": lambda: nn.Activation("sigmoid"),
}
# LeCun uniform, U(+-sqrt(3 / fan_in)), zero bias: the same in all three frameworks.
INIT = dict(
    weight_initializer=mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=3), bias_initializer="zeros"
)


class LeNet5(HybridBlock):
    def __init__(self, num_classes=10, pooling="max", activation="relu", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        pool = POOLING[check_choice("pooling", pooling, POOLINGS)]
        self.act = ACTIVATION[check_choice("activation", activation, ACTIVATIONS)]()
        self.c1 = nn.Conv2D(6, 5, padding=2, in_channels=1, **INIT)  # 6@28x28
        self.s2 = pool(2)  # 6@14x14
        self.c3 = nn.Conv2D(16, 5, in_channels=6, **INIT)  # 16@10x10
        self.s4 = pool(2)  # 16@5x5
        self.c5 = nn.Conv2D(120, 5, in_channels=16, **INIT)  # 120@1x1
        self.f6 = nn.Dense(84, in_units=120, **INIT)
        self.output = nn.Dense(num_classes, in_units=84, **INIT)
        self.dropout = nn.Dropout(dropout)  # in training only: before F6 and before the output

    def hybrid_forward(self, F, x):
        x = self.s2(self.act(self.c1(x)))
        x = self.s4(self.act(self.c3(x)))
        x = self.act(self.c5(x))
        x = self.act(self.f6(self.dropout(F.flatten(x))))
        return self.output(self.dropout(x))
