"""LeNet-5 in Keras 3, channels last (N, 28, 28, 1): today's (LeNet5) and the 1998 paper's (LeCun98).

Kept parallel to model_pytorch/ and model_mxnet/: the same layer names (c1, s2, c3, s4, c5,
f6, output), in the same order, with the same initialisation. LeNet5 is built from Keras' own
layers only, so a saved model opens with keras.saving.load_model without this package; LeCun98
has four layers of its own, registered with Keras: importing model_tensorflow first opens it.
"""

import os

# Loading TensorFlow writes banners to stderr from C++, past TF_CPP_MIN_LOG_LEVEL: silence file
# descriptor 2 for the import alone, so that whatever imports this model (train.py, predict,
# convert) keeps its error messages the one line they are.
# Its C++ errors are logged too, before they reach Python as exceptions, which the project reports
# in that line (a data-parallel worker whose peer died would log a dozen): level 3 keeps them quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # and its Python-side start-up chatter
_stderr = os.dup(2)
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
try:
    import keras
    from keras import layers, ops
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)

import numpy as np  # noqa: E402

from lenet5.config import ACTIVATIONS, ARCHS, LEAKY_SLOPE, POOLINGS, check_choice  # noqa: E402
from lenet5.network import lecun98  # noqa: E402

POOLING = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}
ACTIVATION = {
    "relu": lambda name: layers.ReLU(name=name),
    "leakyrelu": lambda name: layers.ReLU(negative_slope=LEAKY_SLOPE, name=name),
    "tanh": lambda name: layers.Activation("tanh", name=name),
    "sigmoid": lambda name: layers.Activation("sigmoid", name=name),
}
# LeCun uniform, U(+-sqrt(3 / fan_in)), zero bias: the same in all three frameworks.
INIT = dict(kernel_initializer="lecun_uniform", bias_initializer="zeros")


def LeNet5(num_classes=10, pooling="max", activation="relu", dropout=0.0):
    pool = POOLING[check_choice("pooling", pooling, POOLINGS)]
    act = ACTIVATION[check_choice("activation", activation, ACTIVATIONS)]

    def drop(name):  # in training only: before F6 and before the output (none at 0, as in saved models)
        return [layers.Dropout(dropout, name=name)] if dropout else []

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(6, 5, padding="same", name="c1", **INIT),
            act("c1_act"),  # 6@28x28
            pool(2, name="s2"),  # 6@14x14
            layers.Conv2D(16, 5, name="c3", **INIT),
            act("c3_act"),  # 16@10x10
            pool(2, name="s4"),  # 16@5x5
            layers.Conv2D(120, 5, name="c5", **INIT),
            act("c5_act"),  # 120@1x1
            layers.Flatten(name="flatten"),
            *drop("f6_dropout"),
            layers.Dense(84, name="f6", **INIT),
            act("f6_act"),
            *drop("output_dropout"),
            layers.Dense(num_classes, name="output", **INIT),
        ],
        name="lenet5",
    )


@keras.saving.register_keras_serializable(package="lenet5")
def squash(x):
    """The paper's squashing function, 1.7159 tanh(2a / 3)."""
    return lecun98.SQUASH_A * ops.tanh(lecun98.SQUASH_S * x)


@keras.saving.register_keras_serializable(package="lenet5")
class PaperUniform(keras.initializers.Initializer):
    """The paper's U(+-2.4 / fan-in), or `init`'s, for the neutral array `key` (c1.weight ...), in Keras' layout."""

    def __init__(self, key, init="fan-in"):
        self.key, self.init = key, init

    def __call__(self, shape, dtype=None):
        bound = lecun98.init_bound(self.key, self.init)
        bound = bound.transpose(2, 3, 1, 0) if bound.ndim == 4 else bound.T
        return keras.random.uniform(shape, -1, 1, dtype=dtype) * bound

    def get_config(self):
        return {"key": self.key, "init": self.init}


@keras.saving.register_keras_serializable(package="lenet5")
class PaperInput(layers.Layer):
    """The paper's input: background -0.1 and ink 1.175, the 28x28 digit centred in 32x32."""

    def call(self, x):
        x = lecun98.SCALE * x + lecun98.OFFSET
        return ops.pad(x, [[0, 0], [lecun98.PAD] * 2, [lecun98.PAD] * 2, [0, 0]], constant_values=lecun98.BACKGROUND)


@keras.saving.register_keras_serializable(package="lenet5")
class Subsampling(layers.Layer):
    """S2 and S4: the sum of each 2x2 block, times one trainable coefficient per map, plus a bias."""

    def __init__(self, init="fan-in", **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, shape):
        name = self.name  # s2 or s4
        self.kernel = self.add_weight(
            (shape[-1],), initializer=PaperUniform(f"{name}.weight", self.init), name="kernel"
        )
        self.bias = self.add_weight((shape[-1],), initializer=PaperUniform(f"{name}.bias", self.init), name="bias")

    def get_config(self):
        return {**super().get_config(), "init": self.init}

    def call(self, x):
        return 4 * ops.average_pool(x, 2, 2) * self.kernel + self.bias


@keras.saving.register_keras_serializable(package="lenet5")
class TableConv2D(layers.Conv2D):
    """C3: a 5x5 convolution whose weights outside Table I are masked to zero, so get no gradient."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * lecun98.C3_MASK.transpose(2, 3, 1, 0))


@keras.saving.register_keras_serializable(package="lenet5")
class RBF(layers.Layer):
    """The output: minus each unit's squared distance to its fixed bitmap (lenet5/network/lecun98.py)."""

    def build(self, shape):
        centres = lecun98.RBF_CENTRES.T  # (84, 10), as a Dense kernel
        self.kernel = self.add_weight(centres.shape, initializer=keras.initializers.Constant(centres), trainable=False)

    def call(self, x):
        return -ops.sum((x[:, :, None] - self.kernel[None]) ** 2, axis=1)


def LeCun98(num_classes=10, dropout=0.0, init="fan-in"):
    """LeNet-5 as the paper built it (lenet5/network/lecun98.py): takes the same normalised images. Its
    output has the ten digits' bitmaps: num_classes is 10 (lenet5.training.run and lenet5.network.weights check it)."""

    def drop(name):
        return [layers.Dropout(dropout, name=name)] if dropout else []

    def conv(filters, name, cls=layers.Conv2D):
        return cls(
            filters,
            5,
            name=name,
            kernel_initializer=PaperUniform(f"{name}.weight", init),
            bias_initializer=PaperUniform(f"{name}.bias", init),
        )

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            PaperInput(name="input_field"),  # 1@32x32
            conv(6, "c1"),
            layers.Activation(squash, name="c1_act"),  # 6@28x28
            Subsampling(init, name="s2"),
            layers.Activation(squash, name="s2_act"),  # 6@14x14
            conv(16, "c3", TableConv2D),
            layers.Activation(squash, name="c3_act"),  # 16@10x10
            Subsampling(init, name="s4"),
            layers.Activation(squash, name="s4_act"),  # 16@5x5
            conv(120, "c5"),
            layers.Activation(squash, name="c5_act"),  # 120@1x1
            layers.Flatten(name="flatten"),
            *drop("f6_dropout"),
            layers.Dense(
                84,
                name="f6",
                kernel_initializer=PaperUniform("f6.weight", init),
                bias_initializer=PaperUniform("f6.bias", init),
            ),
            layers.Activation(squash, name="f6_act"),
            *drop("output_dropout"),
            RBF(name="output"),
        ],
        name="lecun98",
    )


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
    masked = sum(int((lecun98.C3_MASK == 0).sum()) for layer in model.layers if isinstance(layer, TableConv2D))
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights) - masked
