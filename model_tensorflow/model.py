"""LeNet-5 in Keras 3, channels last (N, 28, 28, 1).

Kept parallel to model_pytorch/ and model_mxnet/: the same layer names (c1, s2, c3, s4, c5,
f6, output), in the same order, with the same initialisation. Built from Keras' own layers
only, so a saved model opens with keras.saving.load_model without this package.
"""

import os

# Loading TensorFlow writes banners to stderr from C++, past TF_CPP_MIN_LOG_LEVEL: silence file
# descriptor 2 for the import alone, so that whatever imports this model (train.py, predict,
# convert) keeps its error messages the one line they are.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # and its Python-side start-up chatter
_stderr = os.dup(2)
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
try:
    import keras
    from keras import layers
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)

from lenet5.config import ACTIVATIONS, LEAKY_SLOPE, POOLINGS, check_choice  # noqa: E402 (after the quiet import)

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
