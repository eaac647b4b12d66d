"""The idiomatic Keras loop that python -m lenet5.bench compares train_tensorflow/train.py with:
model.compile + model.fit on numpy arrays, as in the Keras examples, with the same model, data and
recipe (Adam, cosine decay per step); the test set is fit's validation_data."""

import time

# isort: off
from model_tensorflow import LeNet5  # first: it imports TensorFlow without its banners on stderr
# isort: on

import keras
import tensorflow as tf

from lenet5.bench.baseline import EpochTimer, baseline_args
from lenet5.config import ADAM_BETAS, ADAM_EPS
from lenet5.data.splits import load_splits, num_batches


class Clock(keras.callbacks.Callback):
    """fit's epoch split into its training part and its validation part."""

    def __init__(self, timer):
        super().__init__()
        self.timer = timer

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.trained = time.perf_counter()

    def on_test_end(self, logs=None):
        self.evaluated = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.timer.add(self.trained - self.start, self.evaluated - self.trained, logs["val_accuracy"])


def main(argv=None):
    args = baseline_args("tensorflow", argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    data = load_splits(
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        channels_last=True,
        data_dir=args.data_dir,
        progress=False,
    )
    train, test = data.train, data.test
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr, decay_steps=args.epochs * num_batches(len(train), args.batch_size)
    )
    model = LeNet5()
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1], epsilon=ADAM_EPS),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    model.fit(
        train.x,
        train.y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=0,
        validation_data=(test.x, test.y),
        validation_batch_size=args.batch_size,
        callbacks=[Clock(timer)],
    )
    timer.write(args.output, len(train), len(test))


if __name__ == "__main__":
    main()
