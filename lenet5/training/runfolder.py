"""A run folder: the names of its files, and the one reader of them.

A run folder holds everything one training run made: the resolved options (config.json), the
class names in label order (classes.json), one metrics row per epoch (metrics.csv), the last
checkpoint (checkpoint.json names its files), the trained model in its framework's own files
(model.pt, model.keras or model.params) and in the neutral layout (model.npz), the test-set
predictions (test_predictions.npz), the final result (result.json) and, with --tensorboard, the
same metrics for TensorBoard (tensorboard/). lenet5.training.run.Run writes it, through
lenet5.training.checkpoint for the checkpoints; everything else reads it through RunFolder.
"""

import csv
import json
import zipfile
from pathlib import Path

import numpy as np

from .. import files
from ..config import Config
from ..network import weights

CONFIG = "config.json"
CLASSES = "classes.json"
METRICS = "metrics.csv"
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "eval_seconds")
CHECKPOINT = "checkpoint.json"  # names the last complete checkpoint's files (lenet5.training.checkpoint)
CHECKPOINT_KEYS = {"framework", "epoch", "step", "partial", "files"}
RESULT = "result.json"
PREDICTIONS = "test_predictions.npz"  # label, prediction, probability, logits: one row per test image, in order
TENSORBOARD = "tensorboard"  # the event files' folder


class RunError(Exception):
    """A run folder cannot be made, read or used as asked; the message says why in one line."""


class RunFolder:
    """Reads a run folder's files; each read raises RunError for a file that is missing where it
    must be, or damaged."""

    def __init__(self, path):
        self.dir = Path(path)

    def path(self, name):
        return self.dir / name

    def is_run(self):
        return self.path(CONFIG).is_file()

    def is_unstarted(self):
        """Whether this is a run folder that its run was stopped in before writing anything (an
        existing folder holding nothing, or only the staging folders of lenet5.files)."""
        return self.dir.is_dir() and all(files.is_leftover(path) for path in self.dir.iterdir())

    def _json(self, name, required=True):
        try:
            return json.loads(self.path(name).read_text())
        except FileNotFoundError:
            if not required:
                return None
            if not self.is_run():
                raise RunError(f"{self.dir}: not a run folder (no {CONFIG} there)") from None
            raise RunError(f"{self.dir}: no {name} there") from None
        except (OSError, ValueError) as error:
            raise RunError(f"{self.path(name)} is damaged ({error})") from None

    def config(self):
        """The run's options (config.json)."""
        values = self._json(CONFIG)
        try:
            return Config(**values)
        except TypeError as error:  # not a dict, or names an option this version lacks
            raise RunError(f"{self.path(CONFIG)} is damaged ({error})") from None

    def classes(self):
        """The class names in label order (classes.json)."""
        return [str(name) for name in self._json(CLASSES)]

    def checkpoint(self):
        """The last committed checkpoint ({framework, epoch, step, partial, files}), or None."""
        checkpoint = self._json(CHECKPOINT, required=False)
        if checkpoint is not None and (not isinstance(checkpoint, dict) or set(checkpoint) != CHECKPOINT_KEYS):
            raise RunError(f"{self.path(CHECKPOINT)} is damaged (not a checkpoint index)")
        return checkpoint

    def result(self):
        """The finished run's result.json, or None for a run that has not finished."""
        return self._json(RESULT, required=False)

    def metrics(self):
        """metrics.csv's complete rows (a kill may cut the last one short), numbers parsed: [] when
        no epoch has finished."""
        try:
            with open(self.path(METRICS), newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise RunError(f"{self.path(METRICS)} is unreadable ({error})") from None
        if rows and tuple(reader.fieldnames) != METRIC_COLUMNS:
            raise RunError(f"{self.path(METRICS)} is damaged (columns {', '.join(reader.fieldnames)})")
        complete = []
        for row in rows:
            if "" in row.values() or None in row.values():
                break  # a row cut short by a kill
            try:
                complete.append({k: int(v) if k == "epoch" else float(v) for k, v in row.items()})
            except ValueError as error:
                raise RunError(f"{self.path(METRICS)} is damaged ({error})") from None
        return complete

    def predictions(self):
        """test_predictions.npz as {label, prediction, probability, logits}, or None for a run that
        has not finished."""
        try:
            with np.load(self.path(PREDICTIONS)) as npz:
                return {key: npz[key] for key in npz.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise RunError(f"{self.path(PREDICTIONS)} is damaged ({str(error).splitlines()[0]})") from None

    def final_model(self, framework):
        """The trained model's file in `framework`'s own format (as a user opens it; MXNet's graph
        files lie beside it)."""
        return self.path(weights.MODEL_STEM + weights.NATIVE[framework][0])

    def neutral_model(self):
        return self.path(weights.FILENAME)
