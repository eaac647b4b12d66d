"""The writer of a run folder (lenet5.training.runfolder says what it holds), the per-epoch line and
the progress bars, and the one line that says what is kept when Ctrl-C, SIGTERM, a full disk or a
diverging loss (lenet5.training.stopping) stops a run. In a data-parallel run
(lenet5.training.distributed), rank 0 alone writes and prints.
"""

import contextlib
import csv
import platform
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import model_name
from ..data.download import DIGITS
from ..files import atomic_path, describe, first_line, staging, write_json, write_npz
from ..network import lecun98, weights
from ..network.reference import softmax
from .checkpoint import Checkpoints
from .distributed import World
from .runfolder import CLASSES, CONFIG, METRIC_COLUMNS, METRICS, PREDICTIONS, RESULT, TENSORBOARD, RunError, RunFolder
from .stopping import Agreement, Interrupted, Stopped


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

    def __init__(self, cfg, world=None, all_sum=None, watch=None):
        """`watch`: a data-parallel run's PeerWatch, whose line says, as the run's own would, what is kept."""
        self.cfg, self.world = cfg, world or World()
        world = self.world
        self.agreement = Agreement(world, all_sum)  # the stop signal and loss check of every process
        self.writes = world.writes  # rank 0 alone writes the run folder and prints
        folder = cfg.resume or (_new_run_dir(cfg) if self.writes else None)  # the others read it to resume
        self.folder = RunFolder(folder) if folder else None
        self.dir = self.folder and self.folder.dir
        self.checkpoints = Checkpoints(self.folder, cfg.framework) if folder else None
        self.history = []  # one dict per finished epoch, as in metrics.csv
        self.partial = None  # where a checkpoint inside an epoch stopped: epoch, sums, seconds
        self.epoch_started = self.epoch_trained = 0.0  # perf_counter() times (lenet5.training.loop)
        self._tensorboard = None  # a tensorboardX SummaryWriter with --tensorboard
        self.classes = list(DIGITS)
        if watch:
            watch.keeps(self.kept)

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
        of the current step and raises Stopped (lenet5.training.stopping); it, a write that fails
        (a full disk) or a diverging loss then says in its one line what is kept. A signal after
        the last epoch's checkpoint lets the final files be written (seconds). In a data-parallel
        run every process stops at the same step, the first agreement after any was signalled."""
        try:
            with self.agreement.noting_signals():
                yield
        except KeyboardInterrupt as stop:  # Interrupted, or Python's own for SIGINT
            self._close_tensorboard()
            signum = getattr(stop, "signum", signal.SIGINT)
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            raise Stopped(f"{self._who()}{what}; {self.kept()}", signum) from None
        except OSError as error:  # a full disk, a quota, an I/O error: the file written is named
            self._close_tensorboard()
            raise RunError(f"{self._who()}{describe(error)}; {self.kept()}") from None
        except RunError as error:
            self._close_tensorboard()
            raise RunError(f"{self._who()}{error}; {self.kept()}") from None

    def _who(self):
        """Which process a line is from, in a data-parallel run: each may print its last."""
        return f"rank {self.world.rank} of {self.world.size}: " if self.world.size > 1 else ""

    def kept(self):
        """What a run that stops now keeps, for its one line."""
        return self.checkpoints.kept() if self.writes else "rank 0 says what is kept"

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
        """Commit a checkpoint (lenet5.training.checkpoint) after `epoch` finished epochs and `step`
        steps, plus, inside an epoch, `partial`: {epoch, loss_sum, correct, seen, seconds} of the
        epoch so far, summed over the processes. After Ctrl-C or SIGTERM, the run stops here."""
        if self.writes:
            self.checkpoints.commit(epoch, step, save, partial)
        stop = self.agreement.stop_signal()
        if stop:
            # Every process waits here for rank 0's checkpoint: one that left while TensorFlow's
            # rank 0 saved under MultiWorkerMirroredStrategy made that save fail ("Socket closed").
            # The wait's own end may fail in the process that leaves last, its peer gone: the
            # checkpoint is committed, and the run stops all the same.
            with contextlib.suppress(Exception):
                self.agreement.sums()
            raise Interrupted(stop)

    def say_start(self, framework, num_params, data):
        """The run's first line: `framework` (its version, where it runs, its threads and processes),
        the model's size, the splits and the run folder."""
        self.say(
            f"{framework}, {num_params:,} parameters; "
            f"{len(data.train):,} train / {len(data.val or ()):,} val / {len(data.test):,} test images; {self.dir}"
        )

    def load_checkpoint(self, load):
        """Continue from the last committed checkpoint: `load(paths)` restores the framework's
        state from its files. Returns its epoch: 0 when the run stopped before its first, and starts
        again. A file that cannot be loaded (truncated, of another architecture) gets one line."""
        epoch, paths = self.resume()
        if not paths:
            return 0
        try:
            load(paths)
        except Exception as error:
            raise RunError(f"--resume: cannot load {paths[0]}: {first_line(error)}") from None
        return epoch

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
            eval_seconds=time.perf_counter() - self.epoch_trained,
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

    def save_final(self, write, params, labels, logits):
        """Rank 0's files of the trained model: the framework's own, written by `write(folder, name)`
        into a staging folder (whole files or none), model.npz from the neutral `params` (from the
        framework's model_<framework>/convert.py), and the test predictions."""
        if not self.writes:
            return
        with staging(self.dir) as tmp:
            write(tmp, self.folder.final_model(self.cfg.framework).name)
        self.save_weights(params)
        self.save_predictions(labels, logits)

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
