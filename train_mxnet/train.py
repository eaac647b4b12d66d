"""Train LeNet-5 on MNIST with MXNet (Gluon).

    python train.py                                  # the default recipe
    python train.py --pooling avg --activation tanh  # another cell of the results table
    python train.py --resume runs/<run folder>       # continue an interrupted run

Kept parallel to train_pytorch/train.py and train_tensorflow/train.py: a diff of two of them
shows only what the frameworks force. The options, data and run folder come from lenet5/.
"""

import functools
import os
import sys

if __name__ == "__main__":  # before MXNet is imported, which sizes its thread pool then
    from lenet5.cli import threads_before_import

    threads_before_import(sys.argv[1:])

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
from lenet5.files import staging
from lenet5.run import Run
from lenet5.runfolder import RunError
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


def make_optimizer(cfg, model):
    if cfg.optimizer == "sdlm":
        return gluon.Trainer(model.collect_params(), "sdlm", {"learning_rate": cfg.lr})
    if cfg.optimizer == "sgd":
        options = {"momentum": cfg.momentum}
    else:
        options = {"beta1": ADAM_BETAS[0], "beta2": ADAM_BETAS[1], "epsilon": ADAM_EPS}
    # MXNet 1.9 has no AdamW optimizer: adamw is Adam, with the decay applied by decay_weights
    name, wd = ("adam", 0.0) if cfg.optimizer == "adamw" else (cfg.optimizer, cfg.weight_decay)
    return gluon.Trainer(model.collect_params(), name, {"learning_rate": cfg.lr, "wd": wd, **options})


def decay_weights(model, factor):
    """Decoupled weight decay, before the Adam step, as torch.optim.AdamW: w <- w x (1 - lr x wd)."""
    for param in model.collect_params().values():
        param.data()[:] *= factor


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
    checkpoint inside the epoch; returns (loss, accuracy, next step, last lr)."""
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
        x, y = mx.nd.array(x, device), mx.nd.array(y, device)
        with autograd.record():
            logits = model(x)
            loss = loss_of(logits, y, cfg.arch, cfg.label_smoothing)
        loss.backward()
        if cfg.optimizer == "adamw":
            decay_weights(model, 1 - lr * cfg.weight_decay)
        # gradients are summed over the batch: step divides by its size, but SDLM's per-image steps are summed
        optimizer.step(1 if cfg.optimizer == "sdlm" else len(y))
        step += 1
        loss_sum += loss.sum()
        correct += (logits.argmax(axis=1) == y).sum()
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
    run.check_finite(loss_sum.asscalar(), epoch, step)
    return loss_sum.asscalar() / seen, correct.asscalar() / seen, step, lr


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


def load_checkpoint(run, model, optimizer, device):
    """Restore model and optimizer from the run's last checkpoint; return its epoch."""
    epoch, paths = run.resume()
    if not paths:  # stopped before its first checkpoint: start again
        return 0
    try:
        model.load_parameters(str(paths[0]), ctx=device)
        optimizer.load_states(str(paths[1]))
    except Exception as error:  # truncated file, another architecture, not a checkpoint at all
        raise RunError(f"--resume: cannot load {paths[0]}: {str(error).splitlines()[0]}") from None
    return epoch


def train(cfg):
    """Train, test and save one run as `cfg` says; returns its result (result.json)."""
    threads = set_threads(cfg.threads)
    device = select_device(cfg.device)
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
    model.initialize(ctx=device)
    model.hybridize(static_alloc=True, static_shape=True)
    optimizer = make_optimizer(cfg, model)
    run = Run(cfg)
    start = load_checkpoint(run, model, optimizer, device) if cfg.resume else 0
    run.start(data.classes)

    steps_per_epoch = num_batches(len(data.train), cfg.batch_size)
    print(
        f"MXNet {mx.__version__} on {device} ({threads} threads), {num_params(model):,} parameters; "
        f"{len(data.train):,} train / {len(data.val or ()):,} val / {len(data.test):,} test images; "
        f"{run.dir}",
        flush=True,
    )
    step = start * steps_per_epoch
    save = functools.partial(save_checkpoint, model=model, optimizer=optimizer)
    with run.stopping():  # Ctrl-C, SIGTERM, a full disk, a diverging loss: one line, the last checkpoint kept
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

        final = run.folder.final_model(FRAMEWORK)
        with staging(run.dir) as tmp:  # whole files or none
            model.save_parameters(str(tmp / final.name))  # for build(...).load_parameters(...)
            model(mx.nd.zeros((1, 1, 28, 28), ctx=device))  # export needs a forward pass: a run resumed after
            model.export(str(tmp / final.stem))  # its last epoch made none; for gluon.SymbolBlock.imports(...)
        run.save_weights(to_neutral(model))  # model.npz, the neutral copy: lenet5.convert, ONNX
        test_loss, test_acc, test_logits = evaluate(model, data.test, cfg.batch_size, cfg.arch, device)
        run.save_predictions(data.test.y, test_logits)
        return run.finish(test_loss, test_acc, num_params(model), mx.__version__, str(device))


def main(argv=None):
    return run_command(FRAMEWORK, train, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
