"""The checkpoint protocol of a run folder: commit a checkpoint so that a kill at any moment leaves a
complete one, and find it again to resume, inside an epoch too.

Each train.py writes its framework's files for a stem (`save(stem)` returns their names);
checkpoint.json, replaced atomically afterwards, then names them, with the finished epochs, the
optimizer steps and, for a checkpoint inside an epoch, where that epoch stood (`partial`: epoch,
loss sum, correct, images seen, seconds). The previous checkpoint's files go after the commit.
"""

from .files import write_json
from .runfolder import CHECKPOINT, RunError


class Checkpoints:
    """The checkpoints of one run folder (a lenet5.runfolder.RunFolder) of `framework`."""

    def __init__(self, folder, framework):
        self.folder, self.framework = folder, framework

    def commit(self, epoch, step, save, partial=None):
        """Write a checkpoint after `epoch` finished epochs and `step` steps, plus, inside an
        epoch, `partial`; `save(stem)` writes the framework's files as <run>/<stem>.<suffix>."""
        stem = f"checkpoint-epoch{epoch:04d}" + (f"-step{step:07d}" if partial else "")
        names = list(save(self.folder.path(stem)))
        previous = self.folder.checkpoint()
        write_json(
            self.folder.path(CHECKPOINT),
            {"framework": self.framework, "epoch": epoch, "step": step, "partial": partial, "files": names},
        )
        for name in previous["files"] if previous else ():
            if name not in names:
                self.folder.path(name).unlink(missing_ok=True)

    def resume(self):
        """(finished epochs, file paths, partial) of the last checkpoint, or (0, [], None) if there
        is none; refused when another framework wrote it or its files are gone."""
        checkpoint = self.folder.checkpoint()
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
