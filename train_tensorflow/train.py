"""Train LeNet-5 on MNIST with TensorFlow (Keras 3).

    python train.py                                  # the default recipe
    python train.py --pooling avg --activation tanh  # another cell of the results table
    python train.py --resume runs/<run folder>       # continue an interrupted run
    TF_CONFIG='{"cluster": ...}' python train.py     # data-parallel: one of the workers (docs/distributed.md)

Kept parallel to train_pytorch/train.py and train_mxnet/train.py: a diff of two of them
shows only what the frameworks force. The options, data and run folder come from lenet5/.
"""

import functools
import json
import os
import sys
from contextlib import contextmanager

# isort: off
from model_tensorflow import build, num_params  # first: it imports TensorFlow without its banners on stderr
from model_tensorflow.convert import to_neutral
# isort: on

import keras
import numpy as np
import tensorflow as tf

from lenet5.config import ADAM_BETAS, ADAM_EPS, resolve_threads
from lenet5.data.splits import batches, splits_of
from lenet5.files import first_line
from lenet5.network import lecun98
from lenet5.training.cli import run_command
from lenet5.training.distributed import PeerWatch, World, deadline
from lenet5.training.loop import Steps, fit
from lenet5.training.run import Run
from lenet5.training.runfolder import RunError
from train_tensorflow.sdlm import SDLM, estimate_hessian

FRAMEWORK = "tensorflow"


def set_threads(n, batch_size):
    """Use --threads N CPU threads (0: auto, see resolve_threads); returns how many. Called before
    TensorFlow runs its first op: its pools are fixed from then on. LeNet-5's graph is one chain
    of ops: one inter-op thread runs it as fast as TensorFlow's default of one per core."""
    n = resolve_threads(n, batch_size)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (main() called again): pools are set
        return tf.config.threading.get_intra_op_parallelism_threads() or "TensorFlow's default"
    return n


def select_device(name):
    gpus = tf.config.list_physical_devices("GPU")
    if name == "gpu" and not gpus:
        raise RunError(
            "--device gpu: TensorFlow sees no GPU here (requirements/tensorflow.txt "
            "installs the CPU build); use --device cpu or auto"
        )
    if name == "cpu" or not gpus:
        tf.config.set_visible_devices([], "GPU")
        return "/CPU:0"
    return "/GPU:0" if len(gpus) == 1 else f"{len(gpus)} GPUs"


def join_world(cfg, device):
    """The tf.distribute strategy, this process's place among the workers TF_CONFIG names, and
    the watch that ends this process when one is stuck (PeerWatch; TensorFlow's heartbeats tell a
    frozen one): MultiWorkerMirroredStrategy for several, MirroredStrategy for several GPUs in one
    process, else TensorFlow's default (one device, as without tf.distribute); and no watch."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    workers = [*cluster.get("chief", []), *cluster.get("worker", [])]  # the chief, if any, is rank 0
    if len(workers) > 1:
        where = ", ".join(workers)
        try:  # it waits for every worker with no timeout of its own
            with deadline(
                cfg.peer_timeout,
                f"cannot start the cluster {where}: not every worker came within --peer-timeout {cfg.peer_timeout:g} s",
            ):
                strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (tf.errors.OpError, RuntimeError, ValueError) as error:  # a port in use, a bad TF_CONFIG
            raise RunError(f"cannot start the cluster {where}: {first_line(error)}") from None
        task = strategy.cluster_resolver
        rank = task.task_id + (len(cluster.get("chief", [])) if task.task_type == "worker" else 0)
        watch = PeerWatch(cfg.peer_timeout, f"rank {rank} of {len(workers)}: lost the other processes: ")
        return strategy, World(rank, len(workers)), watch
    if device.endswith("GPUs"):
        return tf.distribute.MirroredStrategy(), World(), None
    return tf.distribute.get_strategy(), World(), None


def all_sum(values, strategy, world, watch):
    """`values` summed over the processes (lenet5.training.stopping agrees on sums and stop signals with it)."""
    local = strategy.num_replicas_in_sync // world.size  # each process's replicas share its values
    watch.alive()
    result = _all_sum(strategy, tf.constant(values, tf.float64) / local).numpy().tolist()
    watch.alive()
    return result


@tf.function(reduce_retracing=True)
def _all_sum(strategy, values):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: values), axis=None)


@contextmanager
def peers_lost():
    """A collective that fails (a process died, or froze: TensorFlow's heartbeats) ends this one with one line."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError) as error:
        raise RunError(f"lost the other processes: {first_line(error)}") from None


def make_optimizer(cfg):
    if cfg.optimizer == "sdlm":
        return SDLM(learning_rate=cfg.lr, mu=cfg.mu)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum)
    adam = dict(learning_rate=cfg.lr, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1], epsilon=ADAM_EPS)
    if cfg.optimizer == "adamw":  # decoupled decay: each weight shrunk by lr x wd, as torch.optim.AdamW
        return keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **adam)
    return keras.optimizers.Adam(**adam)


def loss_of(logits, y, arch, label_smoothing=0.0):
    """Summed cross-entropy; lecun98's MAP loss is the cross-entropy over its outputs and a constant -J."""
    if arch == "lecun98":
        logits = tf.pad(logits, [[0, 0], [0, 1]], constant_values=-lecun98.J)
    if label_smoothing:  # Keras smooths one-hot targets only: (1 - eps) x one-hot + eps / classes, as PyTorch
        smoothed = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, reduction="sum"
        )
        return smoothed(tf.one_hot(y, tf.shape(logits)[1]), logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(y, logits)


def make_steps(model, optimizer, split, cfg, strategy, world):
    """The framework's part of the training loop (lenet5.training.loop.Steps), its steps compiled.
    The training step runs on every replica of `strategy` (its share of the global batch) and
    returns this process's (summed loss, correct predictions)."""
    weight_decay = cfg.weight_decay if cfg.optimizer != "adamw" else 0.0  # adamw decays in the optimizer
    replicas = strategy.num_replicas_in_sync

    def replica_step(x, y, lr, divisor):
        optimizer.learning_rate.assign(lr)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_of(logits, y, cfg.arch, cfg.label_smoothing)
            share = loss / divisor  # Keras sums the replicas' gradients: each share's summed loss over `divisor`
        grads = tape.gradient(share, model.trainable_variables)
        if weight_decay:  # coupled L2, as torch.optim's weight_decay (Keras' own is decoupled)
            grads = [g + weight_decay / replicas * v for g, v in zip(grads, model.trainable_variables)]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, correct(logits, y)

    @tf.function
    def train_step(shares, lr, divisor):
        sums = strategy.run(replica_step, args=(*shares, lr, divisor))
        return [tf.add_n(strategy.experimental_local_results(total)) for total in sums]

    @tf.function
    def eval_step(x, y):
        logits = model(x, training=False)
        return loss_of(logits, y, cfg.arch), correct(logits, y), logits

    def correct(logits, y):
        return tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == y, tf.int64))

    def train(x, y, lr, divisor):
        return train_step(replica_shares(strategy, world, x, y), tf.constant(lr), tf.constant(float(divisor)))

    def begin_pass(epoch, seed):
        seed_dropout(model, seed)  # a run resumed inside an epoch draws other numbers for its rest
        if cfg.optimizer == "sdlm":
            estimate_hessian(model, optimizer, split, cfg, epoch)

    return Steps(
        train=train,
        evaluate=functools.partial(evaluate, eval_step, batch_size=cfg.batch_size),
        save=functools.partial(save_checkpoint, model=model),
        begin_pass=begin_pass,
    )


def seed_dropout(model, seed):
    """Start each Dropout layer's random numbers from `seed` (the checkpoints do not keep them)."""
    for i, layer in enumerate(layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)):
        layer.seed_generator.state.assign([seed, i << 32])  # (seed, counter): apart from each other


def replica_shares(strategy, world, x, y):
    """This process's share of a global batch, cut among its replicas (its GPUs, with
    MirroredStrategy; else the one replica takes it whole). Replicas are numbered process by process."""
    local = strategy.num_replicas_in_sync // world.size

    def share(replica):
        return World(replica.replica_id_in_sync_group - world.rank * local, local).share(x, y)

    return strategy.experimental_distribute_values_from_function(share)


def evaluate(eval_step, split, batch_size):
    """(mean cross-entropy, accuracy, logits) over a split, in order, without training behaviour."""
    loss_sum, correct, outputs = 0.0, 0, []
    for x, y in batches(split, batch_size):
        loss, hits, logits = eval_step(tf.constant(x), tf.constant(y))
        loss_sum += float(loss)
        correct += int(hits)
        outputs.append(logits.numpy())
    return loss_sum / len(split), correct / len(split), np.concatenate(outputs)


def save_checkpoint(stem, model):
    """Write what --resume needs; returns the file names (the run commits them)."""
    path = stem.with_suffix(".keras")
    model.save(path)  # weights and, as the model is compiled, the optimizer's state
    return [path.name]


def load_checkpoint(paths, model, optimizer):
    """Restore model and optimizer from a checkpoint's files (Run.load_checkpoint)."""
    saved = keras.saving.load_model(paths[0])
    model.set_weights(saved.get_weights())  # the optimizer is built (train())
    for mine, theirs in zip(optimizer.variables, saved.optimizer.variables, strict=True):
        mine.assign(theirs)


def save_model(folder, name, model):
    """The trained model, for keras.saving.load_model(...)."""
    model.save(folder / name)


def train(cfg):
    """Train, test and save one run as `cfg` says; returns its result (result.json)."""
    threads = set_threads(cfg.threads, cfg.batch_size)
    device = select_device(cfg.device)
    strategy, world, watch = join_world(cfg, device)
    world.check(cfg.batch_size)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()  # same seed, same metrics
    data = splits_of(cfg, channels_last=True)
    with strategy.scope():  # the variables: mirrored on every replica, the same at the start
        model = build(cfg.arch, len(data.classes), cfg.pooling, cfg.activation, cfg.dropout, cfg.init)
        optimizer = make_optimizer(cfg)
        model.compile(optimizer=optimizer)  # so that model.save() keeps the optimizer's state
        optimizer.build(model.trainable_variables)  # here, not inside the replicas' step
    run = Run(cfg, world, watch and functools.partial(all_sum, strategy=strategy, world=world, watch=watch), watch)
    load = functools.partial(load_checkpoint, model=model, optimizer=optimizer)
    start = run.load_checkpoint(load) if cfg.resume else 0
    run.start(data.classes)

    run.say_start(
        f"TensorFlow {tf.__version__} (Keras {keras.__version__}) on {device} ({threads} threads{world.describe()})",
        num_params(model),
        data,
    )
    steps = make_steps(model, optimizer, data.train, cfg, strategy, world)
    # Ctrl-C, SIGTERM, a full disk, a diverging loss, a lost process: one line, the last checkpoint kept
    with run.stopping(), peers_lost():
        test_loss, test_acc, test_logits = fit(run, data, steps, start)
        save = functools.partial(save_model, model=model)
        run.save_final(save, to_neutral(model), data.test.y, test_logits)  # model.npz: lenet5.convert, ONNX
        result = run.finish(test_loss, test_acc, num_params(model), tf.__version__, device)
        if watch:  # nothing waits for the other workers after this
            watch.close()
        return result


def is_worker():
    """Whether this process is a worker of a data-parallel run (TF_CONFIG names its cluster)."""
    return bool(os.environ.get("TF_CONFIG"))


def main(argv=None):
    return run_command(FRAMEWORK, train, argv, __doc__.split("\n\n")[0], is_worker)


if __name__ == "__main__":
    sys.exit(main())
