"""SDLM in Keras: the optimizer and the Hessian diagonal it steps by (lenet5/network/sdlm.py).

Kept parallel to train_pytorch/sdlm.py and train_mxnet/sdlm.py. The optimizer is registered with
Keras, so that a checkpoint (a .keras file with the optimizer's state) opens where this is imported.
"""

import keras
import tensorflow as tf

from lenet5.config import Config
from lenet5.network import lecun98, sdlm


@keras.saving.register_keras_serializable(package="lenet5")
class SDLM(keras.optimizers.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (lenet5/network/sdlm.py): each parameter steps by
    lr / (mu + h) times its gradient, h its Hessian diagonal (a variable, so checkpoints keep it)."""

    def __init__(self, mu=Config.mu, **kwargs):  # the default opens a checkpoint saved before --mu
        super().__init__(**kwargs)
        self.mu = mu

    def get_config(self):  # a checkpoint's optimizer is rebuilt from it
        return {**super().get_config(), "mu": self.mu}

    def build(self, variables):
        super().build(variables)
        self.hessians = [self.add_variable_from_reference(v, "hessian") for v in variables]

    def set_hessian(self, diagonals):
        for h, d in zip(self.hessians, diagonals, strict=True):
            h.assign(d)

    def update_step(self, gradient, variable, learning_rate):
        h = self.hessians[self._get_variable_index(variable)]
        self.assign_sub(variable, learning_rate * gradient / (h + self.mu))


def estimate_hessian(model, optimizer, split, cfg, epoch):
    """SDLM's Hessian diagonal for pass `epoch`: the paper's, on its SAMPLES images (lenet5/network/sdlm.py)."""
    h = paper_hessian(model, sdlm.samples(split, cfg.seed, epoch))
    if not optimizer.built:  # train.py builds it first (under its tf.distribute strategy)
        optimizer.build(model.trainable_variables)
    optimizer.set_hessian([h[v.path] for v in model.trainable_variables])


def paper_hessian(model, x):
    """{variable path: h} of lecun98 `model` on images x, the paper's backpropagation of second
    derivatives as one backward pass: each layer runs again on its inputs' squares with its weights
    squared (Layer.stateless_call), and what flows back through a unit is multiplied by f'(a)^2
    (lenet5/network/sdlm.py)."""
    squared = {}  # path: the tensor standing for a weight's square (a bias's value does not matter)
    x = model.get_layer("input_field")(x)
    u = x * x
    with tf.GradientTape() as tape:
        for name in lecun98.LAYERS[:-1]:
            layer = model.get_layer(name)
            if name == "f6":
                x, u = tf.reshape(x, (len(x), -1)), tf.reshape(u, (len(u), -1))
            x = model.get_layer(f"{name}_act")(layer(x))
            values = [tf.square(v) if v.name == "kernel" else tf.zeros_like(v) for v in layer.trainable_variables]
            tape.watch(values)
            squared.update({v.path: value for v, value in zip(layer.trainable_variables, values, strict=True)})
            t, _ = layer.stateless_call(values, layer.non_trainable_variables, u)
            scaled = lecun98.squash_gain(x) ** 2 * t
            u = x * x + scaled - tf.stop_gradient(scaled)  # the value x^2; backward, f'(a)^2 times what reaches x
        total = tf.reduce_sum(sdlm.output_curvature(x.numpy()) * u)
    h = tape.gradient(total, list(squared.values()))
    return {path: (v / len(x)).numpy() for path, v in zip(squared, h)}
