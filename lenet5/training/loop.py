"""The training loop of every train.py: the epochs and their steps, the learning-rate schedule,
the running sums (read from the device every 20 steps, where the loss is checked and the processes
of a data-parallel run agree), the checkpoints inside and after each epoch, and the evaluations.
A train.py hands over what its framework does as Steps, and calls fit() inside Run.stopping().
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import lr_at
from ..data.splits import augmenter, batches, epoch_seed, num_batches

CHECK_EVERY = 20  # steps between reads of the running sums: each read waits for the device


@dataclass
class Steps:
    """A framework's part of training. `train(x, y, lr, divisor)` takes one optimizer step on this
    process's share of a batch, the gradient that of its summed loss over `divisor` (see divisor()),
    and returns (summed loss, correct predictions) of the share, as the framework's values: the loop
    adds them up without reading them. `evaluate(split)` returns (mean loss, accuracy, logits).
    `save(stem)` writes a checkpoint and returns its file names. `begin_pass(epoch, seed)` runs before
    each pass that starts from its first batch: dropout reseeded with `seed`, SDLM's Hessian estimated.
    `value(total)` reads one of the sums of what `train` returned as a Python number. `batches(
    batch_size, seed, skip)`, if given, yields the training split's batches in the framework's own
    values (on its device), in the order of lenet5.data.splits.batches; else the loop makes them."""

    train: Callable
    evaluate: Callable
    save: Callable
    begin_pass: Callable
    value: Callable = float
    batches: Callable = None


def divisor(cfg, n):
    """What a batch's summed loss is divided by for its gradient: the global batch's size `n` (the
    mean loss), or 1 for SDLM, whose per-image steps are summed, as the 1998 paper's."""
    return 1 if cfg.optimizer == "sdlm" else n


def fit(run, data, steps, start=0):
    """Train from the end of epoch `start` (its checkpoint loaded) to cfg.epochs, and test;
    returns the test's (mean loss, accuracy, logits)."""
    cfg = run.cfg
    steps_per_epoch = num_batches(len(data.train), cfg.batch_size)
    step = start * steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    for epoch in range(start + 1, cfg.epochs + 1):
        train_loss, train_acc, step, lr = _train_epoch(run, data.train, steps, epoch, step, total_steps)
        run.epoch_trained = time.perf_counter()  # log_epoch times the evaluation from here
        seconds = run.epoch_trained - run.epoch_started
        val_loss, val_acc, _ = steps.evaluate(data.val) if data.val else (float("nan"),) * 3
        run.log_epoch(epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds)
        run.save_checkpoint(epoch, step, steps.save)
    return steps.evaluate(data.test)


def _train_epoch(run, split, steps, epoch, step, total_steps):
    """One pass over the shuffled (and augmented) training split, or what is left of it after a
    checkpoint inside the epoch; returns (loss, accuracy, next step, last lr), over every process."""
    cfg, agreement = run.cfg, run.agreement
    done, loss_sum, correct, seen = _begin_epoch(run, epoch)
    if not done:  # inside an epoch, the checkpoint's random state and Hessian go on
        steps.begin_pass(epoch, epoch_seed(cfg.seed, epoch))
    step += done
    lr = lr_at(cfg, step - 1, total_steps)
    if steps.batches:
        epoch_batches = steps.batches(cfg.batch_size, (cfg.seed, epoch), done)
    else:
        epoch_batches = batches(split, cfg.batch_size, (cfg.seed, epoch), done, augmenter(cfg.augment))
    bar = run.progress(epoch_batches, num_batches(len(split), cfg.batch_size) - done, f"epoch {epoch}")
    for x, y in bar:
        lr = lr_at(cfg, step, total_steps)
        n = len(y)  # the global batch; this process trains on its share
        x, y = run.world.share(x, y)
        loss, hits = steps.train(x, y, lr, divisor(cfg, n))
        loss_sum, correct = loss_sum + loss, correct + hits  # the framework's values: no wait
        step += 1
        seen += len(y)
        if step % CHECK_EVERY == 0:
            here = steps.value(loss_sum)  # one read: it waits for the device
            agreement.checked_sums(epoch, step, here)
            bar.set_postfix(loss=f"{here / seen:.4f}", acc=f"{steps.value(correct) / seen:.2%}")
        if agreement.stop_signal() or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            # a checkpoint inside the epoch, with the sums of every process so far (never diverged ones)
            sums = agreement.checked_sums(epoch, step, steps.value(loss_sum), int(steps.value(correct)), seen)
            seconds = time.perf_counter() - run.epoch_started
            partial = dict(epoch=epoch, loss_sum=sums[0], correct=int(sums[1]), seen=int(sums[2]), seconds=seconds)
            run.save_checkpoint(epoch - 1, step, steps.save, partial)
    loss_sum, correct, seen = agreement.checked_sums(
        epoch, step, steps.value(loss_sum), int(steps.value(correct)), seen
    )
    return loss_sum / seen, int(correct) / seen, step, lr


def _begin_epoch(run, epoch):
    """Where this epoch starts: (batches already done, their loss sum, correct, images seen) from a
    checkpoint inside it, else from nothing. The checkpoint's sums are those of all the processes:
    in a data-parallel run, rank 0 carries them on, the others add their shares."""
    partial = run.partial if run.partial and run.partial["epoch"] == epoch else None
    run.epoch_started = time.perf_counter() - (partial["seconds"] if partial else 0.0)
    if not partial:
        return 0, 0.0, 0, 0
    done = -(-partial["seen"] // run.cfg.batch_size)
    return (done, partial["loss_sum"], partial["correct"], partial["seen"]) if run.writes else (done, 0.0, 0, 0)
