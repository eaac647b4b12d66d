"""The checkpoint protocol of a run folder: commit a checkpoint so that a kill at any moment leaves a
complete one, and find it again to resume, inside an epoch too.

Each train.py writes its framework's files for a stem (`save(stem)` returns their names), staged
(lenet5.files) so that they appear whole or not at all; checkpoint.json, replaced atomically
afterwards, then names them, with the finished epochs, the optimizer steps and, for a checkpoint
inside an epoch, where that epoch stood (`partial`: epoch, loss sum, correct, images seen,
seconds). The previous checkpoint's files go after the commit. What a process killed between
those steps leaves (files no checkpoint.json names, staging folders) goes when the run resumes.
"""

import re
import shutil

from ..files import is_leftover, staging, write_json
from .runfolder import CHECKPOINT, RunError

STEM = re.compile(r"checkpoint-epoch\d{4}(-step\d{7})?\W")  # the files commit() names, and no other


class Checkpoints:
    """The checkpoints of one run folder (a lenet5.training.runfolder.RunFolder) of `framework`."""

    def __init__(self, folder, framework):
        self.folder, self.framework = folder, framework

    def commit(self, epoch, step, save, partial=None):
        """Write a checkpoint after `epoch` finished epochs and `step` steps, plus, inside an
        epoch, `partial`; `save(stem)` writes the framework's files as <run>/<stem>.<suffix>."""
        stem = f"checkpoint-epoch{epoch:04d}" + (f"-step{step:07d}" if partial else "")
        with staging(self.folder.dir) as tmp:
            names = list(save(tmp / stem))
        previous = self.folder.checkpoint()
        write_json(
            self.folder.path(CHECKPOINT),
            {"framework": self.framework, "epoch": epoch, "step": step, "partial": partial, "files": names},
        )
        for name in previous["files"] if previous else ():
            if name not in names:
                self.folder.path(name).unlink(missing_ok=True)

    def resume(self, clean=True):
        """(finished epochs, file paths, partial) of the last checkpoint, or (0, [], None) if there
        is none; refused when another framework wrote it or its files are gone. `clean` removes what
        a killed process left (the writer of the folder only: rank 0 of a data-parallel run)."""
        checkpoint = self.folder.checkpoint()
        if clean:
            self._remove_leftovers(checkpoint["files"] if checkpoint else [])
        if not checkpoint:
            return 0, [], None
        if checkpoint["framework"] != self.framework:
            raise RunError(
                f"--resume: {self.folder.path(CHECKPOINT)} was written by {checkpoint['framework']}, "
                f"not {self.framework}"
            )
        paths = [self.folder.path(name) for name in checkpoint["files"]]
        missing = [str(path) for path in paths if not path.exists()]
        if missing:
            raise RunError(f"--resume: checkpoint files are missing: {', '.join(missing)}")
        return checkpoint["epoch"], paths, checkpoint["partial"]

    def _remove_leftovers(self, names):
        """Remove what a killed process left: staging folders, and checkpoint files that no
        commit finished naming."""
        for path in self.folder.dir.iterdir():
            if is_leftover(path):
                shutil.rmtree(path, ignore_errors=True)
            elif STEM.match(path.name) and path.name not in names:
                path.unlink(missing_ok=True)

    def kept(self):
        """What a stopped run keeps, and how to go on, for its last line."""
        checkpoint = self.folder.checkpoint()
        if not checkpoint:
            return "no checkpoint had been written, so the run starts afresh with --resume"
        partial = checkpoint["partial"]
        where = (
            f"epoch {partial['epoch']}, step {checkpoint['step']}"
            if partial
            else f"the end of epoch {checkpoint['epoch']}"
        )
        return f"the checkpoint at {where} is kept: continue with --resume {self.folder.dir}"
