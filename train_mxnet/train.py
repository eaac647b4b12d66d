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
import threading
import time

if __name__ == "__main__":  # before MXNet is imported, which sizes its thread pool then
    from lenet5.cli import threads_before_import

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

from lenet5 import lecun98
from lenet5.cli import run_command
from lenet5.config import ADAM_BETAS, ADAM_EPS, lr_at
from lenet5.data import augmenter, batches, epoch_seed, load_splits, num_batches
from lenet5.distributed import World
from lenet5.files import staging
from lenet5.run import Run
from lenet5.runfolder import RunError
from train_mxnet.roles import first_line
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
# lenet5.run sums at most 5 numbers at a time.
ALL_SUM, ALL_SUM_SIZE = 1 << 20, 8


def all_sum(values, kv, watch):
    """`values` summed over the workers (lenet5.run agrees on sums and stop signals with it): the
    dist_sync kvstore's servers add what each worker pushes to a key of its own."""
    watch.alive()
    total = mx.nd.zeros(ALL_SUM_SIZE, dtype="float64")
    total[: len(values)] = mx.nd.array(values, dtype="float64")
    kv.pushpull(ALL_SUM, total, out=total)
    result = total.asnumpy()[: len(values)].tolist()  # waits for every step queued before it, too
    watch.alive()
    return result


class PeerWatch:
    """ps-lite waits for ever for a worker that died or hangs, and for one that never comes: this
    watch ends the process with one line when the workers have not agreed (all_sum) for
    --peer-timeout seconds, where Python cannot raise (the main thread waits inside MXNet)."""

    def __init__(self, timeout, what):
        self.timeout, self.what, self.kept = timeout, what, None
        self.deadline = time.monotonic() + timeout
        threading.Thread(target=self._watch, daemon=True).start()

    def lost(self, what, kept=None):
        self.what, self.kept = what, kept
        self.alive()

    def alive(self):
        self.deadline = time.monotonic() + self.timeout

    def close(self):
        """At the end of a run: the kvstore's barrier at exit is not watched (nor the run kept alive)."""
        self.kept, self.deadline = None, None

    def _watch(self):
        while self.deadline and time.monotonic() < self.deadline:
            time.sleep(min(1.0, self.timeout / 10))
        if self.deadline is None:
            return
        kept = f"; {self.kept()}" if self.kept else ""
        print(f"train.py: error: {self.what}no answer within --peer-timeout {self.timeout} s{kept}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # what waits for the lost workers would wait for ever, in exit too


def make_optimizer(cfg, model, kv=None):
    # a kvstore sums the workers' or devices' gradients; each updates its own copy of the weights
    kvstore = dict(kvstore=kv, update_on_kvstore=False) if kv else {}
    if cfg.optimizer == "sdlm":
        return gluon.Trainer(model.collect_params(), "sdlm", {"learning_rate": cfg.lr}, **kvstore)
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


def train_one_epoch(model, optimizer, split, cfg, epoch, step, total_steps, device, run, save):
    """One pass over the shuffled (and augmented) training split, or what is left of it after a
    checkpoint inside the epoch; returns (loss, accuracy, next step, last lr). In a data-parallel
    run, this process trains on its share, and `optimizer` sums the gradients over the kvstore; on
    several GPUs, each trains on its part of the share."""
    devices = next(iter(model.collect_params().values())).list_ctx()  # `device` and any other GPUs
    done, loss_sum, correct, seen = run.begin_epoch(epoch)
    if not done:  # dropout's numbers (a run resumed inside an epoch draws others for its rest)
        mx.random.seed(epoch_seed(cfg.seed, epoch))
        if cfg.optimizer == "sdlm":  # before each pass; inside one, the checkpoint's goes on
            estimate_hessian(model, optimizer, split, cfg, epoch, device)
    loss_sum, correct = mx.nd.array([loss_sum], device), mx.nd.array([correct], device)
    step += done
    lr = lr_at(cfg, step - 1, total_steps)
    bar = run.progress(
        batches(split, cfg.batch_size, seed=(cfg.seed, epoch), skip=done, augment=augmenter(cfg.augment)),
        num_batches(len(split), cfg.batch_size) - done,
        f"epoch {epoch}",
    )
    for x, y in bar:
        lr = lr_at(cfg, step, total_steps)
        optimizer.set_learning_rate(lr)
        n = len(y)  # the global batch; this process trains on its share
        x, y = run.world.share(x, y)
        parts = [(mx.nd.array(x, d), mx.nd.array(y, d)) for x, y, d in split_over(x, y, devices)]
        with autograd.record():
            outputs = [(model(x), y) for x, y in parts]
            losses = [loss_of(logits, y, cfg.arch, cfg.label_smoothing) for logits, y in outputs]
        autograd.backward(losses)
        if cfg.optimizer == "adamw":
            decay_weights(model, 1 - lr * cfg.weight_decay)
        # gradients are summed over the share and, by the kvstore, over the processes: step divides by
        # the global batch, but SDLM's per-image steps are summed
        optimizer.step(1 if cfg.optimizer == "sdlm" else n)
        step += 1
        for loss, (logits, y) in zip(losses, outputs):
            loss_sum += loss.sum().as_in_context(device)
            correct += (logits.argmax(axis=1) == y).sum().as_in_context(device)
            seen += len(y)
        if step % 20 == 0:  # reading the sums waits for the device: not every step
            run.check_finite(loss_sum.asscalar(), epoch, step)
            bar.set_postfix(loss=f"{loss_sum.asscalar() / seen:.4f}", acc=f"{correct.asscalar() / seen:.2%}")
        if run.checkpoint_due(step):  # every --checkpoint-every steps, and after Ctrl-C
            run.save_checkpoint(
                epoch - 1,
                step,
                save,
                partial=dict(
                    epoch=epoch, loss_sum=float(loss_sum.asscalar()), correct=int(correct.asscalar()), seen=seen
                ),
            )
    # of every process
    loss_sum, correct, seen = run.end_epoch(loss_sum.asscalar(), correct.asscalar(), seen, epoch, step)
    return loss_sum / seen, correct / seen, step, lr


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


def load_checkpoint(run, model, optimizer, devices):
    """Restore model and optimizer from the run's last checkpoint; return its epoch."""
    epoch, paths = run.resume()
    if not paths:  # stopped before its first checkpoint: start again
        return 0
    try:
        model.load_parameters(str(paths[0]), ctx=devices)
        optimizer.load_states(str(paths[1]))
    except Exception as error:  # truncated file, another architecture, not a checkpoint at all
        raise RunError(f"--resume: cannot load {paths[0]}: {str(error).splitlines()[0]}") from None
    return epoch


def train(cfg):
    """Train, test and save one run as `cfg` says; returns its result (result.json)."""
    threads = set_threads(cfg.threads)
    device = select_device(cfg.device)
    devices = devices_of(device)
    world, kv, watch = join_world(cfg, devices)
    world.check(cfg.batch_size)
    mx.random.seed(cfg.seed)  # same seed, same metrics
    data = load_splits(
        cfg.val_size,
        cfg.limit_train,
        cfg.limit_test,
        channels_last=False,
        data_dir=cfg.data_dir,
        progress=not cfg.no_progress,
        dataset=cfg.dataset,
        validate_on_test=cfg.validate_on_test,
    )
    model = build(cfg.arch, len(data.classes), cfg.pooling, cfg.activation, cfg.dropout)
    model.initialize(ctx=devices)
    model.hybridize(static_alloc=True, static_shape=True)
    optimizer = make_optimizer(cfg, model, kv)
    run = Run(cfg, world, watch and functools.partial(all_sum, kv=kv, watch=watch))
    if watch:  # its line says, as the run's own would, what is kept
        watch.lost(watch.what, lambda: run.checkpoints.kept() if run.writes else "rank 0 says what is kept")
    start = load_checkpoint(run, model, optimizer, devices) if cfg.resume else 0
    if watch:
        broadcast_weights(optimizer)
    run.start(data.classes)

    steps_per_epoch = num_batches(len(data.train), cfg.batch_size)
    run.say(
        f"MXNet {mx.__version__} on {', '.join(map(str, devices))} ({threads} threads{world.describe()}), "
        f"{num_params(model):,} parameters; "
        f"{len(data.train):,} train / {len(data.val or ()):,} val / {len(data.test):,} test images; "
        f"{run.dir}"
    )
    step = start * steps_per_epoch
    save = functools.partial(save_checkpoint, model=model, optimizer=optimizer)
    # Ctrl-C, SIGTERM, a full disk, a diverging loss: one line, the last checkpoint kept (a lost
    # process: PeerWatch's line)
    with run.stopping():
        for epoch in range(start + 1, cfg.epochs + 1):
            train_loss, train_acc, step, lr = train_one_epoch(
                model, optimizer, data.train, cfg, epoch, step, cfg.epochs * steps_per_epoch, device, run, save
            )
            seconds = run.epoch_seconds()
            val_loss, val_acc, _ = (
                evaluate(model, data.val, cfg.batch_size, cfg.arch, device) if data.val else (float("nan"),) * 3
            )
            run.log_epoch(epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds)
            run.save_checkpoint(epoch, step, save)

        test_loss, test_acc, test_logits = evaluate(model, data.test, cfg.batch_size, cfg.arch, device)
        if run.writes:  # rank 0 alone, in a data-parallel run
            final = run.folder.final_model(FRAMEWORK)
            with staging(run.dir) as tmp:  # whole files or none
                model.save_parameters(str(tmp / final.name))  # for build(...).load_parameters(...)
                model(mx.nd.zeros((1, 1, 28, 28), ctx=device))  # export needs a forward pass: a run resumed after
                model.export(str(tmp / final.stem))  # its last epoch made none; for gluon.SymbolBlock.imports(...)
            run.save_weights(to_neutral(model))  # model.npz, the neutral copy: lenet5.convert, ONNX
            run.save_predictions(data.test.y, test_logits)
        result = run.finish(test_loss, test_acc, num_params(model), mx.__version__, str(device))
        if watch:  # every worker here (watched) before the kvstore's own barrier at exit, which is not
            all_sum([0.0], kv, watch)
            watch.close()
        return result


def main(argv=None):
    code = run_command(FRAMEWORK, train, argv, __doc__.split("\n\n")[0])
    if not code and os.environ.get("DMLC_ROLE") == "worker":
        gc.collect()  # the kvstore, in the Trainer's cycles: its end stops the servers and scheduler
    if code and os.environ.get("DMLC_ROLE") == "worker":  # the kvstore's barrier at exit would wait for
        sys.stdout.flush()  # workers that failed otherwise, or were lost: not at all
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
