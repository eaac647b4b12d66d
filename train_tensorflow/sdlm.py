"""SDLM in Keras: the optimizer and the Hessian diagonal it steps by (lenet5/network/sdlm.py).

Kept parallel to train_pytorch/sdlm.py and train_mxnet/sdlm.py. The optimizer is registered with
Keras, so that a checkpoint (a .keras file with the optimizer's state) opens where this is imported.
"""

import functools

import keras
import tensorflow as tf

from lenet5.network import sdlm


@keras.saving.register_keras_serializable(package="lenet5")
class SDLM(keras.optimizers.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (lenet5/network/sdlm.py): each parameter steps by
    lr / (mu + h) times its gradient, h its Hessian diagonal (a variable, so checkpoints keep it)."""

    def build(self, variables):
        super().build(variables)
        self.hessians = [self.add_variable_from_reference(v, "hessian") for v in variables]

    def set_hessian(self, diagonals):
        for h, d in zip(self.hessians, diagonals, strict=True):
            h.assign(d)

    def update_step(self, gradient, variable, learning_rate):
        h = self.hessians[self._get_variable_index(variable)]
        self.assign_sub(variable, learning_rate * gradient / (h + sdlm.MU))


@functools.cache  # one per model: traced once, not before every pass
def make_hessian_step(model):
    """A compiled function of one image and a vector at F6: the squares of the gradient that vector
    backpropagates (lenet5/network/sdlm.py)."""
    features = keras.Model(model.inputs, model.get_layer("f6_act").output)  # F6's outputs

    @tf.function
    def hessian_step(x, v):
        with tf.GradientTape() as tape:
            f6 = features(x, training=False)
        return [g * g for g in tape.gradient(f6, model.trainable_variables, output_gradients=v)]

    return features, hessian_step


def estimate_hessian(model, optimizer, split, cfg, epoch):
    """SDLM's Hessian diagonal for pass `epoch`: the mean square of single images' gradients, each
    backpropagated from F6 with a vector of the loss's curvature there (lenet5/network/sdlm.py)."""
    features, hessian_step = make_hessian_step(model)
    x = sdlm.samples(split, cfg.seed, epoch)
    v = sdlm.curvature_vectors(features(x, training=False).numpy(), cfg.seed, epoch)
    squares = [tf.zeros_like(w) for w in model.trainable_variables]
    for i in range(len(x)):
        squares = [total + g for total, g in zip(squares, hessian_step(x[i : i + 1], v[i : i + 1]))]
    if not optimizer.built:  # train.py builds it first (under its tf.distribute strategy)
        optimizer.build(model.trainable_variables)
    optimizer.set_hessian([total / len(x) for total in squares])
