"""LeNet-5 in MXNet Gluon, channels first (N, 1, 28, 28), as HybridBlocks: today's (LeNet5) and
the 1998 paper's (LeCun98).

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

from lenet5.config import ACTIVATIONS, ARCHS, LEAKY_SLOPE, POOLINGS, check_choice
from lenet5.network import lecun98

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


@mx.init.register
class PaperUniform(mx.init.Initializer):
    """The paper's U(+-2.4 / fan-in), or `init`'s, for the neutral array `key` (c1.weight ...)."""

    def __init__(self, key, init="fan-in"):
        super().__init__(key=key, init=init)
        self.key, self.init = key, init

    def _init_weight(self, _, arr):
        arr[:] = mx.nd.random.uniform(-1, 1, arr.shape) * mx.nd.array(lecun98.init_bound(self.key, self.init))


def paper_init(name, init):
    return dict(
        weight_initializer=PaperUniform(f"{name}.weight", init), bias_initializer=PaperUniform(f"{name}.bias", init)
    )


class Squash(HybridBlock):
    """The paper's squashing function, 1.7159 tanh(2a / 3)."""

    def hybrid_forward(self, F, x):
        return lecun98.SQUASH_A * F.tanh(lecun98.SQUASH_S * x)


class Subsampling(HybridBlock):
    """S2 and S4: the sum of each 2x2 block, times one trainable coefficient per map, plus a bias."""

    def __init__(self, name, maps, init, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.params.get("weight", shape=(maps,), init=PaperUniform(f"{name}.weight", init))
        self.bias = self.params.get("bias", shape=(maps,), init=PaperUniform(f"{name}.bias", init))

    def hybrid_forward(self, F, x, weight, bias):
        summed = 4 * F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="avg")
        return F.broadcast_add(F.broadcast_mul(summed, weight.reshape((1, -1, 1, 1))), bias.reshape((1, -1, 1, 1)))


class TableConv2D(nn.Conv2D):
    """C3: a 5x5 convolution whose weights outside Table I are masked to zero, so get no gradient."""

    def __init__(self, **kwargs):
        super().__init__(16, 5, in_channels=6, **kwargs)
        self.mask = self.params.get_constant("mask", lecun98.C3_MASK)

    def hybrid_forward(self, F, x, weight, bias, mask):
        return super().hybrid_forward(F, x, weight * mask, bias)


class RBF(HybridBlock):
    """The output: minus each unit's squared distance to its fixed bitmap (lenet5/network/lecun98.py)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        centres = lecun98.RBF_CENTRES
        self.weight = self.params.get("weight", shape=centres.shape, init=mx.init.Constant(centres), grad_req="null")

    def hybrid_forward(self, F, x, weight):
        return -F.sum(F.square(F.broadcast_sub(x.expand_dims(1), weight.expand_dims(0))), axis=2)


class LeCun98(HybridBlock):
    """LeNet-5 as the paper built it (lenet5/network/lecun98.py): takes the same normalised images. Its
    output has the ten digits' bitmaps: num_classes is 10 (lenet5.training.run and lenet5.network.weights check it)."""

    def __init__(self, num_classes=10, dropout=0.0, init="fan-in", **kwargs):
        super().__init__(**kwargs)
        self.act = Squash()
        self.c1 = nn.Conv2D(6, 5, in_channels=1, **paper_init("c1", init))  # 6@28x28, from the 32x32 field
        self.s2 = Subsampling("s2", 6, init)  # 6@14x14
        self.c3 = TableConv2D(**paper_init("c3", init))  # 16@10x10
        self.s4 = Subsampling("s4", 16, init)  # 16@5x5
        self.c5 = nn.Conv2D(120, 5, in_channels=16, **paper_init("c5", init))  # 120@1x1
        self.f6 = nn.Dense(84, in_units=120, **paper_init("f6", init))
        self.output = RBF()
        self.dropout = nn.Dropout(dropout)  # in training only: before F6 and before the output

    def field(self, F, x):
        """The paper's input: background -0.1, ink 1.175, in a 32x32 field."""
        pad = (0, 0, 0, 0) + (lecun98.PAD,) * 4
        return F.pad(
            lecun98.SCALE * x + lecun98.OFFSET, mode="constant", pad_width=pad, constant_value=lecun98.BACKGROUND
        )

    def features(self, F, x):
        """F6's outputs, the RBF units' inputs."""
        x = self.act(self.s2(self.act(self.c1(self.field(F, x)))))
        x = self.act(self.s4(self.act(self.c3(x))))
        x = self.act(self.c5(x))
        return self.act(self.f6(self.dropout(F.flatten(x))))

    def hybrid_forward(self, F, x):
        return self.output(self.dropout(self.features(F, x)))


def build(arch="lenet5", num_classes=10, pooling="max", activation="relu", dropout=0.0, init="fan-in"):
    """The model `arch` names (lenet5.config.ARCHS); lecun98 has its own subsampling, squashing and `init`."""
    if check_choice("architecture", arch, ARCHS) == "lecun98":
        return LeCun98(num_classes, dropout, init)
    return LeNet5(num_classes, pooling, activation, dropout)


def model_of(meta, dropout=0.0):
    """The model that a neutral weight file's meta (lenet5/network/weights.py) describes."""
    return build(meta["arch"], meta["num_classes"], meta["pooling"], meta["activation"], dropout)


def num_params(model):
    """Trainable parameters: C3's masked weights are not (lenet5/network/lecun98.py), nor the RBF bitmaps."""
    masked = int((lecun98.C3_MASK == 0).sum()) if isinstance(model, LeCun98) else 0
    return sum(p.data().size for p in model.collect_params().values() if p.grad_req != "null") - masked
