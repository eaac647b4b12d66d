"""The writer of a run folder (lenet5.runfolder says what it holds), the per-epoch line and the
progress bars; Ctrl-C, SIGTERM, a full disk and a diverging loss. In a data-parallel run
(lenet5.distributed), rank 0 alone writes and prints, and the processes agree, at the steps where
the loss is checked, on the sums of their shares and on a signal that any of them received.
"""

import csv
import math
import platform
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import lecun98, weights
from .checkpoint import Checkpoints
from .config import model_name
from .distributed import World
from .download import DIGITS
from .files import atomic_path, describe, write_json, write_npz
from .reference import softmax
from .runfolder import CLASSES, CONFIG, METRIC_COLUMNS, METRICS, PREDICTIONS, RESULT, TENSORBOARD, RunError, RunFolder

# Ctrl-C, and what batch schedulers (SLURM, Kubernetes, systemd) send before they kill a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (`signum`), raised where the process stood, as Python raises KeyboardInterrupt."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum, frame):
    """A signal handler: SIGTERM, too, unwinds the stack (files being written are removed)."""
    raise Interrupted(signum)


@contextmanager
def signals_raise():
    """Within the block, SIGINT and SIGTERM raise Interrupted (only in the main thread, where
    Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = [signal.signal(signum, raise_interrupted) for signum in STOP_SIGNALS]
    try:
        yield
    finally:
        for signum, handler in zip(STOP_SIGNALS, previous):
            signal.signal(signum, handler)


class Stopped(Exception):
    """Ctrl-C or SIGTERM (`signum`) stopped the run at the end of a step, after a checkpoint; the
    message says what is kept."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


def _new_run_dir(cfg):
    parent = Path(cfg.output_dir).expanduser().resolve()
    name = cfg.run_name or (
        f"{cfg.framework}-{model_name(cfg.arch, cfg.pooling, cfg.activation)}-seed{cfg.seed}-"
        f"{time.strftime('%Y%m%d-%H%M%S')}"
    )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 100):
            path = parent / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                path.mkdir()  # exclusive: two runs never share a folder
                return path
            except FileExistsError:
                if cfg.run_name:
                    raise RunError(
                        f"run folder {path} already exists; choose another --run-name, "
                        f"or continue it with --resume {path}"
                    ) from None
    except OSError as error:  # not allowed, not a folder, disk full...
        raise RunError(
            f"cannot create a run folder in {parent} ({error.strerror}); choose another --output-dir"
        ) from None
    raise RunError(f"too many runs named {name} in {parent}")


class Run:
    """One training run's folder and log. `cfg.resume` names an existing folder to continue.
    `world` is this process's place in a data-parallel run, and `all_sum` the framework's sum of
    a list of numbers over its processes (needed when there are several)."""

    def __init__(self, cfg, world=None, all_sum=None):
        self.cfg, self.world, self._all_sum = cfg, world or World(), all_sum
        world = self.world
        self.writes = world.writes  # rank 0 alone writes the run folder and prints
        folder = cfg.resume or (_new_run_dir(cfg) if self.writes else None)  # the others read it to resume
        self.folder = RunFolder(folder) if folder else None
        self.dir = self.folder and self.folder.dir
        self.checkpoints = Checkpoints(self.folder, cfg.framework) if folder else None
        self.history = []  # one dict per finished epoch, as in metrics.csv
        self.partial = None  # where a checkpoint inside an epoch stopped: epoch, sums, seconds
        self._checked = 0  # the last step whose loss check_finite found finite
        self._signal = 0  # Ctrl-C or SIGTERM seen by this process
        self._agreed_signal = 0  # ... by any process, at the last agreement of a data-parallel run
        self._epoch_started = self._epoch_trained = 0.0
        self._tensorboard = None  # a tensorboardX SummaryWriter with --tensorboard
        self.classes = list(DIGITS)

    def start(self, classes=None):
        """Write config.json, classes.json (the class names in label order, for predict) and,
        when resuming, metrics.csv cut back to the checkpoint. Called once the checkpoint has
        loaded, so that a resume that fails changes nothing on disk."""
        if classes is not None:
            self.classes = list(classes)
        if self.cfg.arch == "lecun98" and len(self.classes) != lecun98.NUM_CLASSES:
            raise RunError(
                f"--arch lecun98: its RBF output has the ten digits' bitmaps; "
                f"this dataset has {len(self.classes)} classes"
            )
        if not self.writes:
            return
        write_json(self.path(CONFIG), self.cfg.to_dict())
        write_json(self.path(CLASSES), self.classes)
        if self.cfg.resume:
            self._write_metrics()
        if self.cfg.tensorboard:
            from tensorboardX import SummaryWriter  # only runs that ask for it need it

            # A resumed run drops the events of epochs it trains again, as metrics.csv drops their rows.
            # Its writer thread puts events on disk within flush_secs; close() in finish() writes the rest.
            self._tensorboard = SummaryWriter(
                str(self.path(TENSORBOARD)), flush_secs=2, purge_step=len(self.history) + 1 if self.cfg.resume else None
            )

    @contextmanager
    def stopping(self):
        """Around the training loop and the final files: Ctrl-C or SIGTERM checkpoints at the end
        of the current step and raises Stopped (the same signal again stops at once: a launcher
        that forwards SIGTERM after the terminal's Ctrl-C does not); it, a write that fails (a full
        disk) or a diverging loss then says in its one line what is kept. A signal after the last
        epoch's checkpoint lets the final files be written (seconds). In a data-parallel run every
        process stops at the same step, the first agreement after any of them was signalled."""

        def on_signal(signum, frame):
            if self._signal == signum:
                raise Interrupted(signum)
            self._signal = self._signal or signum

        previous = [signal.signal(signum, on_signal) for signum in STOP_SIGNALS]
        try:
            yield
        except KeyboardInterrupt as stop:  # Interrupted, or Python's own for SIGINT
            self._close_tensorboard()
            signum = getattr(stop, "signum", signal.SIGINT)
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            raise Stopped(f"{self._who()}{what}; {self._kept()}", signum) from None
        except OSError as error:  # a full disk, a quota, an I/O error: the file written is named
            self._close_tensorboard()
            raise RunError(f"{self._who()}{describe(error)}; {self._kept()}") from None
        except RunError as error:
            self._close_tensorboard()
            raise RunError(f"{self._who()}{error}; {self._kept()}") from None
        finally:
            for signum, handler in zip(STOP_SIGNALS, previous):
                signal.signal(signum, handler)

    def _who(self):
        """Which process a line is from, in a data-parallel run: each may print its last."""
        return f"rank {self.world.rank} of {self.world.size}: " if self.world.size > 1 else ""

    def _kept(self):
        return self.checkpoints.kept() if self.writes else "rank 0 says what is kept"

    def _stop(self):
        """The signal to stop on: this process's own, or in a data-parallel run the one agreed on."""
        return self._signal if self.world.size == 1 else self._agreed_signal

    def _agree(self, *values):
        """`values` summed over the processes of a data-parallel run, which agree on the way on
        whether any of them was signalled; as they are, in a run of one process."""
        if self.world.size == 1:
            return values
        signals = [self._signal == signal.SIGINT, self._signal == signal.SIGTERM]
        *totals, sigint, sigterm = self._all_sum([*values, *signals])
        self._agreed_signal = signal.SIGINT if sigint else signal.SIGTERM if sigterm else 0
        return totals

    def begin_epoch(self, epoch):
        """Where this epoch starts: (batches already done, their loss sum, correct, images seen)
        from a checkpoint inside it, else from nothing. The checkpoint's sums are those of all
        the processes: in a data-parallel run, rank 0 carries them on, the others add their shares."""
        partial = self.partial if self.partial and self.partial["epoch"] == epoch else None
        self._epoch_started = time.perf_counter() - (partial["seconds"] if partial else 0.0)
        if not partial:
            return 0, 0.0, 0, 0
        done = -(-partial["seen"] // self.cfg.batch_size)
        return (done, partial["loss_sum"], partial["correct"], partial["seen"]) if self.writes else (done, 0.0, 0, 0)

    def end_epoch(self, loss_sum, correct, seen, epoch, step):
        """The epoch's (loss sum, correct, images seen), summed over the processes of a
        data-parallel run; stops the run if the loss is not finite."""
        loss_sum, correct, seen = self._agree(float(loss_sum), int(correct), seen)
        self._check_finite(loss_sum, epoch, step)
        return loss_sum, int(correct), int(seen)

    def epoch_seconds(self):
        """Seconds of training in this epoch; called when it ends, so that log_epoch can time the
        evaluation that follows."""
        self._epoch_trained = time.perf_counter()
        return self._epoch_trained - self._epoch_started

    def checkpoint_due(self, step):
        """Whether to checkpoint inside the epoch after this step: every --checkpoint-every
        steps, and after Ctrl-C or SIGTERM."""
        every = self.cfg.checkpoint_every
        return bool(self._stop()) or bool(every and step % every == 0)

    def check_finite(self, loss_sum, epoch, step):
        """Stop if the epoch's running loss sum has turned NaN or infinite: some step since the
        last check (train.py checks where it reads the sums anyway, every 20 steps) diverged. In a
        data-parallel run, every process checks the sum of all of them, and they agree on a stop."""
        (value,) = self._agree(float(loss_sum))
        self._check_finite(value, epoch, step)

    def _check_finite(self, value, epoch, step):
        if not math.isfinite(value):
            steps = f"step {step}" if step - self._checked == 1 else f"steps {self._checked + 1}-{step}"
            raise RunError(f"the training loss became {value} in epoch {epoch}, {steps} (try a smaller --lr)")
        self._checked = step

    def path(self, name):
        return self.dir / name

    def progress(self, iterable, total, desc):
        quiet = self.cfg.no_progress or not self.writes
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=quiet)

    def say(self, line):
        """Print a line of the run: rank 0's only, in a data-parallel run."""
        if self.writes:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    def save_checkpoint(self, epoch, step, save, partial=None):
        """Commit a checkpoint (lenet5.checkpoint) after `epoch` finished epochs and `step` steps,
        plus, inside an epoch, `partial`: {epoch, loss_sum, correct, seen} of the epoch so far
        (this process's share: the checkpoint keeps the sums over all). After Ctrl-C or SIGTERM,
        the run stops here."""
        if partial:
            loss_sum, correct, seen = self._agree(partial["loss_sum"], partial["correct"], partial["seen"])
            self._check_finite(loss_sum, partial["epoch"], step)  # never keep diverged weights
            sums = dict(loss_sum=loss_sum, correct=int(correct), seen=int(seen))
            partial = dict(partial, **sums, seconds=self.epoch_seconds())
        if self.writes:
            self.checkpoints.commit(epoch, step, save, partial)
        if self._stop():
            raise Interrupted(self._stop())

    def resume(self):
        """(finished epochs, checkpoint file paths) of the last committed checkpoint, or (0, [])
        if there is none; the history keeps the metrics rows up to that epoch (later ones are
        lost work), and `partial` says where inside the next epoch the checkpoint was taken."""
        epoch, paths, self.partial = self.checkpoints.resume(clean=self.writes)
        self.history = [row for row in self.folder.metrics() if row["epoch"] <= epoch]
        return epoch, paths

    def log_epoch(self, epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds):
        """Add one row to metrics.csv and print the per-epoch line."""
        row = dict(
            epoch=epoch,
            train_loss=float(train_loss),
            train_acc=float(train_acc),
            val_loss=float(val_loss),
            val_acc=float(val_acc),
            lr=float(lr),
            seconds=float(seconds),
            eval_seconds=time.perf_counter() - self._epoch_trained,
        )
        self.history.append(row)
        if not self.writes:
            return
        self._write_metrics()
        self._log_scalars(
            epoch,
            {
                "loss/train": train_loss,
                "accuracy/train": train_acc,
                "loss/val": val_loss,
                "accuracy/val": val_acc,
                "lr": lr,
                "seconds": seconds,
            },
        )
        val = f"val loss {val_loss:.4f} acc {val_acc:6.2%}" if not np.isnan(val_acc) else "no validation"
        self.say(
            f"epoch {epoch:>3}/{self.cfg.epochs} | train loss {train_loss:.4f} acc {train_acc:6.2%} | "
            f"{val} | lr {lr:.2e} | {seconds:.1f} s"
        )

    def _write_metrics(self):
        """metrics.csv written whole (a few kB): an append cut short by a full disk would leave half a row."""
        with atomic_path(self.path(METRICS)) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(self.history)

    def _log_scalars(self, step, scalars):
        if self._tensorboard:
            for tag, value in scalars.items():
                if not np.isnan(value):  # no validation split: no val curve
                    self._tensorboard.add_scalar(tag, float(value), step)

    def _close_tensorboard(self):
        """Write the events still queued: the epochs logged so far survive a stopped run."""
        if self._tensorboard:
            self._tensorboard.close()
            self._tensorboard = None

    def save_weights(self, params):
        """Write model.npz: the trained weights in the neutral layout (from the framework's
        model_<framework>/convert.py), with the options that rebuild the model."""
        weights.save(self.folder.neutral_model(), params, weights.meta_of(self.cfg, len(self.classes)))

    def save_predictions(self, labels, logits):
        """Write test_predictions.npz: for every test image, in test-set order, its label, the
        predicted class, the softmax probabilities and the logits (what lenet5.plot reads)."""
        logits = np.asarray(logits, np.float32)
        write_npz(
            self.path(PREDICTIONS),
            compressed=True,
            label=np.asarray(labels, np.int64),
            prediction=logits.argmax(axis=1),
            probability=softmax(logits),
            logits=logits,
        )

    def finish(self, test_loss, test_acc, num_params, framework_version, device):
        """Write result.json and print the test accuracy."""
        train_seconds = sum(row["seconds"] for row in self.history)
        result = {
            "framework": self.cfg.framework,
            "framework_version": framework_version,
            "python_version": platform.python_version(),
            "numpy_version": np.__version__,
            "platform": platform.platform(),
            "device": device,
            "config": self.cfg.to_dict(),
            "epochs": len(self.history),
            "test_accuracy": float(test_acc),
            "test_loss": float(test_loss),
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / max(len(self.history), 1),
            "num_params": int(num_params),
            "processes": self.world.size,
        }
        if not self.writes:
            return result
        write_json(self.path(RESULT), result)
        self._log_scalars(len(self.history), {"test/loss": test_loss, "test/accuracy": test_acc})
        self._close_tensorboard()
        self.say(
            f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}) after {len(self.history)} epochs, "
            f"{train_seconds:.1f} s of training; run folder: {self.dir}"
        )
        return result
