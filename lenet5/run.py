"""The writer of a run folder (lenet5.runfolder says what it holds), the per-epoch line and the
progress bars; Ctrl-C, SIGTERM, a full disk and a diverging loss.
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
    """One training run's folder and log. `cfg.resume` names an existing folder to continue."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.folder = RunFolder(cfg.resume or _new_run_dir(cfg))
        self.dir = self.folder.dir
        self.checkpoints = Checkpoints(self.folder, cfg.framework)
        self.history = []  # one dict per finished epoch, as in metrics.csv
        self.partial = None  # where a checkpoint inside an epoch stopped: epoch, sums, seconds
        self._checked = 0  # the last step whose loss check_finite found finite
        self._stop_signal = 0  # Ctrl-C or SIGTERM seen: checkpoint at the next step, then stop
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
        of the current step and raises Stopped (a second signal stops at once); it, a write that
        fails (a full disk) or a diverging loss then says in its one line what is kept. A signal
        after the last epoch's checkpoint lets the final files be written (seconds)."""

        def on_signal(signum, frame):
            if self._stop_signal:
                raise Interrupted(signum)
            self._stop_signal = signum

        previous = [signal.signal(signum, on_signal) for signum in STOP_SIGNALS]
        try:
            yield
        except KeyboardInterrupt as stop:  # Interrupted, or Python's own for SIGINT
            self._close_tensorboard()
            signum = getattr(stop, "signum", signal.SIGINT)
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            raise Stopped(f"{what}; {self.checkpoints.kept()}", signum) from None
        except OSError as error:  # a full disk, a quota, an I/O error: the file written is named
            self._close_tensorboard()
            raise RunError(f"{describe(error)}; {self.checkpoints.kept()}") from None
        except RunError as error:
            self._close_tensorboard()
            raise RunError(f"{error}; {self.checkpoints.kept()}") from None
        finally:
            for signum, handler in zip(STOP_SIGNALS, previous):
                signal.signal(signum, handler)

    def begin_epoch(self, epoch):
        """Where this epoch starts: (batches already done, their loss sum, correct, images seen)
        from a checkpoint inside it, else from nothing."""
        partial = self.partial if self.partial and self.partial["epoch"] == epoch else None
        self._epoch_started = time.perf_counter() - (partial["seconds"] if partial else 0.0)
        if not partial:
            return 0, 0.0, 0, 0
        return -(-partial["seen"] // self.cfg.batch_size), partial["loss_sum"], partial["correct"], partial["seen"]

    def epoch_seconds(self):
        """Seconds of training in this epoch; called when it ends, so that log_epoch can time the
        evaluation that follows."""
        self._epoch_trained = time.perf_counter()
        return self._epoch_trained - self._epoch_started

    def checkpoint_due(self, step):
        """Whether to checkpoint inside the epoch after this step: every --checkpoint-every
        steps, and after Ctrl-C or SIGTERM."""
        every = self.cfg.checkpoint_every
        return bool(self._stop_signal) or bool(every and step % every == 0)

    def check_finite(self, loss_sum, epoch, step):
        """Stop if the epoch's running loss sum has turned NaN or infinite: some step since the
        last check (train.py checks where it reads the sums anyway, every 20 steps) diverged."""
        value = float(loss_sum)
        if not math.isfinite(value):
            steps = f"step {step}" if step - self._checked == 1 else f"steps {self._checked + 1}-{step}"
            raise RunError(f"the training loss became {value} in epoch {epoch}, {steps} (try a smaller --lr)")
        self._checked = step

    def path(self, name):
        return self.dir / name

    def progress(self, iterable, total, desc):
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=self.cfg.no_progress)

    def save_checkpoint(self, epoch, step, save, partial=None):
        """Commit a checkpoint (lenet5.checkpoint) after `epoch` finished epochs and `step` steps,
        plus, inside an epoch, `partial`: {epoch, loss_sum, correct, seen} of the epoch so far.
        After Ctrl-C or SIGTERM, the run stops here."""
        if partial:
            self.check_finite(partial["loss_sum"], partial["epoch"], step)  # never keep diverged weights
            partial = dict(partial, seconds=self.epoch_seconds())
        self.checkpoints.commit(epoch, step, save, partial)
        if self._stop_signal:
            raise Interrupted(self._stop_signal)

    def resume(self):
        """(finished epochs, checkpoint file paths) of the last committed checkpoint, or (0, [])
        if there is none; the history keeps the metrics rows up to that epoch (later ones are
        lost work), and `partial` says where inside the next epoch the checkpoint was taken."""
        epoch, paths, self.partial = self.checkpoints.resume()
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
        tqdm.write(
            f"epoch {epoch:>3}/{self.cfg.epochs} | train loss {train_loss:.4f} acc {train_acc:6.2%} | "
            f"{val} | lr {lr:.2e} | {seconds:.1f} s",
            file=sys.stdout,
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
        }
        write_json(self.path(RESULT), result)
        self._log_scalars(len(self.history), {"test/loss": test_loss, "test/accuracy": test_acc})
        self._close_tensorboard()
        print(
            f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}) after {len(self.history)} epochs, "
            f"{train_seconds:.1f} s of training; run folder: {self.dir}",
            flush=True,
        )
        return result
