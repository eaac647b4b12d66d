"""Train LeNet-5 on MNIST with MXNet (Gluon).

    python train.py                                  # the default recipe
    python train.py --pooling avg --activation tanh  # another cell of the results table
    python train.py --resume runs/<run folder>       # continue an interrupted run
    python launch.py -n 2 --launcher local python train.py  # data-parallel, 2 workers (docs/distributed.md)

Kept parallel to train_pytorch/train.py and train_tensorflow/train.py: a diff of two of them
shows only what the frameworks force. The options, data and run folder come from lenet5/.
"""

import functools
import gc
import os
import sys
from pathlib import Path

if __name__ == "__main__":  # before MXNet is imported, which sizes its thread pool then
    from lenet5.training.cli import threads_before_import

    threads_before_import(sys.argv[1:])
    if os.environ.get("DMLC_ROLE") in ("scheduler", "server"):  # launch.py runs this command in each role
        from train_mxnet.roles import serve

        sys.exit(serve())

try:
    from model_mxnet import build, num_params
    from model_mxnet.convert import to_neutral
except ImportError as error:  # the wrong numpy or Python for MXNet: say how to fix it
    sys.exit(f"train.py: error: {error}")
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from lenet5.config import ADAM_BETAS, ADAM_EPS
from lenet5.data.splits import batches, splits_of
from lenet5.files import first_line
from lenet5.network import lecun98
from lenet5.training.cli import run_command
from lenet5.training.distributed import PeerWatch, World
from lenet5.training.loop import Steps, fit
from lenet5.training.run import Run
from lenet5.training.runfolder import RunError
from train_mxnet.sdlm import estimate_hessian

FRAMEWORK = "mxnet"


def set_threads(n):
    """The CPU threads MXNet uses: sized on import (see the top of this file), from --threads or
    OMP_NUM_THREADS, else MXNet's own choice, which was the fastest here (two threads on two cores
    made its steps 30% slower: LeNet-5's operators are too small to share)."""
    return os.environ.get("OMP_NUM_THREADS", "MXNet's default")


def select_device(name):
    if name == "gpu" and mx.context.num_gpus() == 0:
        raise RunError(
            "--device gpu: MXNet sees no GPU here (requirements/mxnet.txt installs the "
            "CPU build; a CUDA one is mxnet-cu112); use --device cpu or auto"
        )
    return mx.gpu(0) if name != "cpu" and mx.context.num_gpus() else mx.cpu()


def devices_of(device):
    """What one process trains on: the CPU, or every GPU it sees, each on its part of the process's
    share of a batch, their gradients summed by a device kvstore (one process a machine)."""
    return [mx.gpu(i) for i in range(mx.context.num_gpus())] if device.device_type == "gpu" else [device]


def join_world(cfg, devices):
    """This process's place among the workers MXNet's launcher started (DMLC_ROLE=worker; alone if
    unset), with their kvstore, and the watch that ends this process when they are lost: dist_sync,
    or dist_sync_device for several GPUs a worker. Alone: the device kvstore for several GPUs, else
    none; and no watch."""
    if os.environ.get("DMLC_ROLE") != "worker":
        return World(), "device" if len(devices) > 1 else None, None
    where = f"{os.environ.get('DMLC_PS_ROOT_URI')}:{os.environ.get('DMLC_PS_ROOT_PORT')}"
    watch = PeerWatch(cfg.peer_timeout, f"cannot start the kvstore at {where}: ")
    try:  # waits for the scheduler, every server and worker
        kv = mx.kv.create("dist_sync_device" if len(devices) > 1 else "dist_sync")
        kv.init(ALL_SUM, mx.nd.zeros(ALL_SUM_SIZE, dtype="float64"))  # and for rank 0's value
    except mx.base.MXNetError as error:
        raise RunError(f"cannot start the kvstore at {where}: {first_line(error)}") from None
    world = World(kv.rank, kv.num_workers)
    watch.lost(f"rank {world.rank} of {world.size}: lost the other processes: ")
    return world, kv, watch


# The kvstore key of all_sum, apart from the Trainer's parameters' 0, 1, ..., and its length:
# lenet5.training.stopping sums at most 5 numbers at a time.
ALL_SUM, ALL_SUM_SIZE = 1 << 20, 8


def all_sum(values, kv, watch):
    """`values` summed over the workers (lenet5.training.stopping agrees on sums and stop signals with it): the
    dist_sync kvstore's servers add what each worker pushes to a key of its own."""
    watch.alive()
    total = mx.nd.zeros(ALL_SUM_SIZE, dtype="float64")
    total[: len(values)] = mx.nd.array(values, dtype="float64")
    kv.pushpull(ALL_SUM, total, out=total)
    result = total.asnumpy()[: len(values)].tolist()  # waits for every step queued before it, too
    watch.alive()
    return result


def make_optimizer(cfg, model, kv=None):
    # a kvstore sums the workers' or devices' gradients; each updates its own copy of the weights
    kvstore = dict(kvstore=kv, update_on_kvstore=False) if kv else {}
    if cfg.optimizer == "sdlm":
        return gluon.Trainer(model.collect_params(), "sdlm", {"learning_rate": cfg.lr, "mu": cfg.mu}, **kvstore)
    if cfg.optimizer == "sgd":
        options = {"momentum": cfg.momentum}
    else:
        options = {"beta1": ADAM_BETAS[0], "beta2": ADAM_BETAS[1], "epsilon": ADAM_EPS}
    # MXNet 1.9 has no AdamW optimizer: adamw is Adam, with the decay applied by decay_weights
    name, wd = ("adam", 0.0) if cfg.optimizer == "adamw" else (cfg.optimizer, cfg.weight_decay)
    return gluon.Trainer(model.collect_params(), name, {"learning_rate": cfg.lr, "wd": wd, **options}, **kvstore)


def broadcast_weights(optimizer):
    """Rank 0's weights to every worker, before the first step: the Trainer would send them in
    its first step, where the pull of a weight from the kvstore and the push of its gradient to the
    same key may run in either order, and a worker then got the summed gradient for its weight (seen
    here: rank 1 diverged). The Trainer's own initialisation (MXNet 1.9's private methods), waited for."""
    if not optimizer._kv_initialized:
        optimizer._init_kvstore()
    if optimizer._params_to_init:
        optimizer._init_params()
    mx.nd.waitall()


def decay_weights(model, factor):
    """Decoupled weight decay, before the Adam step, as torch.optim.AdamW: w <- w x (1 - lr x wd)."""
    for param in model.collect_params().values():
        for data in param.list_data():  # on each device
            data[:] *= factor


# Built once, not at every step: of labels, and of smoothed one-hot targets.
CROSS_ENTROPY = {
    True: gluon.loss.SoftmaxCrossEntropyLoss(),
    False: gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False),
}


def loss_of(logits, y, arch, label_smoothing=0.0):
    """Cross-entropy per image; lecun98's MAP loss is the cross-entropy over its outputs and a constant -J."""
    if arch == "lecun98":
        logits = mx.nd.concat(logits, mx.nd.full((len(logits), 1), -lecun98.J, logits.context), dim=1)
    return CROSS_ENTROPY[not label_smoothing](logits, smoothed(y, logits.shape[1], label_smoothing))


def make_steps(model, optimizer, split, cfg, device):
    """The framework's part of the training loop (lenet5.training.loop.Steps). In a data-parallel
    run, this process trains on its share, and `optimizer` sums the gradients over the kvstore; on
    several GPUs, each trains on its part of the share."""
    devices = next(iter(model.collect_params().values())).list_ctx()  # `device` and any other GPUs

    def train(x, y, lr, divisor):
        optimizer.set_learning_rate(lr)
        parts = [(mx.nd.array(x, d), mx.nd.array(y, d)) for x, y, d in split_over(x, y, devices)]
        with autograd.record():
            outputs = [(model(x), y) for x, y in parts]
            losses = [loss_of(logits, y, cfg.arch, cfg.label_smoothing) for logits, y in outputs]
        autograd.backward(losses)
        if cfg.optimizer == "adamw":
            decay_weights(model, 1 - lr * cfg.weight_decay)
        # gradients are summed over the share and, by the kvstore, over the processes: step divides them
        optimizer.step(divisor)
        loss_sum = sum(loss.sum().as_in_context(device) for loss in losses)
        correct = sum((logits.argmax(axis=1) == y).sum().as_in_context(device) for logits, y in outputs)
        return loss_sum, correct

    def begin_pass(epoch, seed):
        mx.random.seed(seed)  # dropout's numbers (a run resumed inside an epoch draws others for its rest)
        if cfg.optimizer == "sdlm":
            estimate_hessian(model, optimizer, split, cfg, epoch, device)

    return Steps(
        train=train,
        evaluate=functools.partial(evaluate, model, batch_size=cfg.batch_size, arch=cfg.arch, device=device),
        save=functools.partial(save_checkpoint, model=model, optimizer=optimizer),
        begin_pass=begin_pass,
        value=lambda total: float(total.asscalar()),
    )


def split_over(x, y, devices):
    """A share of a batch cut in one contiguous part a device, (x, y, device) each; none empty."""
    cuts = [len(y) * i // len(devices) for i in range(len(devices) + 1)]
    return [(x[a:b], y[a:b], d) for a, b, d in zip(cuts, cuts[1:], devices) if b > a]


def smoothed(y, classes, eps):
    """The targets of the loss: the labels, or (1 - eps) x one-hot + eps / classes, as PyTorch."""
    return mx.nd.one_hot(y, classes) * (1 - eps) + eps / classes if eps else y


def evaluate(model, split, batch_size, arch, device):
    """(mean loss, accuracy, logits) over a split, in order, without training behaviour."""
    loss_sum, correct, outputs = 0.0, 0, []
    for x, y in batches(split, batch_size):
        x, y = mx.nd.array(x, device), mx.nd.array(y, device)
        logits = model(x)
        loss_sum += loss_of(logits, y, arch).sum().asscalar()
        correct += int((logits.argmax(axis=1) == y).sum().asscalar())
        outputs.append(logits.asnumpy())
    return loss_sum / len(split), correct / len(split), np.concatenate(outputs)


def save_checkpoint(stem, model, optimizer):
    """Write what --resume needs; returns the file names (the run commits them)."""
    params, states = stem.with_suffix(".params"), stem.with_suffix(".states")
    model.save_parameters(str(params))
    optimizer.save_states(str(states))
    return [params.name, states.name]


def load_checkpoint(paths, model, optimizer, devices):
    """Restore model and optimizer from a checkpoint's files (Run.load_checkpoint)."""
    model.load_parameters(str(paths[0]), ctx=devices)
    optimizer.load_states(str(paths[1]))


def save_model(folder, name, model, device):
    """The trained model, for build(...).load_parameters(...), and exported, for gluon.SymbolBlock.imports(...)."""
    model.save_parameters(str(folder / name))
    model(mx.nd.zeros((1, 1, 28, 28), ctx=device))  # export needs a forward pass: a run resumed after its
    model.export(str(folder / Path(name).stem))  # last epoch made none


def train(cfg):
    """Train, test and save one run as `cfg` says; returns its result (result.json)."""
    threads = set_threads(cfg.threads)
    device = select_device(cfg.device)
    devices = devices_of(device)
    world, kv, watch = join_world(cfg, devices)
    world.check(cfg.batch_size)
    mx.random.seed(cfg.seed)  # same seed, same metrics
    data = splits_of(cfg, channels_last=False)
    model = build(cfg.arch, len(data.classes), cfg.pooling, cfg.activation, cfg.dropout, cfg.init)
    model.initialize(ctx=devices)
    model.hybridize(static_alloc=True, static_shape=True)
    optimizer = make_optimizer(cfg, model, kv)
    run = Run(cfg, world, watch and functools.partial(all_sum, kv=kv, watch=watch), watch)
    load = functools.partial(load_checkpoint, model=model, optimizer=optimizer, devices=devices)
    start = run.load_checkpoint(load) if cfg.resume else 0
    if watch:
        broadcast_weights(optimizer)
    run.start(data.classes)

    run.say_start(
        f"MXNet {mx.__version__} on {', '.join(map(str, devices))} ({threads} threads{world.describe()})",
        num_params(model),
        data,
    )
    steps = make_steps(model, optimizer, data.train, cfg, device)
    # Ctrl-C, SIGTERM, a full disk, a diverging loss: one line, the last checkpoint kept (a lost
    # process: PeerWatch's line)
    with run.stopping():
        test_loss, test_acc, test_logits = fit(run, data, steps, start)
        save = functools.partial(save_model, model=model, device=device)
        run.save_final(save, to_neutral(model), data.test.y, test_logits)  # model.npz: lenet5.convert, ONNX
        result = run.finish(test_loss, test_acc, num_params(model), mx.__version__, str(device))
        if watch:  # every worker here (watched) before the kvstore's own barrier at exit, which is not
            all_sum([0.0], kv, watch)
            watch.close()
        return result


def is_worker():
    """Whether this process is a worker of a data-parallel run (MXNet's launcher sets DMLC_ROLE)."""
    return os.environ.get("DMLC_ROLE") == "worker"


def main(argv=None):
    code = run_command(FRAMEWORK, train, argv, __doc__.split("\n\n")[0], is_worker)
    if not code and is_worker():
        gc.collect()  # the kvstore, in the Trainer's cycles: its end stops the servers and scheduler
    return code


if __name__ == "__main__":
    sys.exit(main())
