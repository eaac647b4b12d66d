"""What predict and serve open: a finished run folder of any framework, a model.npz or an .onnx
export. One loader for both: a Model says what opens it, its class names and, where there are
some, the neutral weights (model.npz: the numpy reference runs them, and draws the layers);
Model.logits gives the logits of normalised digits.
"""

from dataclasses import dataclass
from pathlib import Path

from .convert import native_logits
from .data.download import DIGITS
from .files import first_line
from .network import reference, weights
from .training.runfolder import RunFolder


class ModelError(Exception):
    """The model cannot be opened or run; the message says why in one line."""


@dataclass
class Model:
    """A model to run: `kind` is "npz" (the numpy reference), "onnx" (onnxruntime) or a run's
    framework, which opens `path`, its trained model, in its own environment if need be."""

    source: Path
    kind: str
    path: Path
    classes: list
    params: dict = None  # the neutral weights and their meta, where there are some
    meta: dict = None
    session: object = None  # onnxruntime's, for an .onnx file
    what: str = ""  # a line saying what it is, for people (serve's header)
    note: str = None  # why some of it cannot be shown, if so (serve's layer maps)

    def logits(self, x, batch_size=1024):
        """Logits of normalised images `x` (N, 1, 28, 28), `batch_size` at a time."""
        if self.kind == "onnx":
            from .onnx_export import onnx_logits

            return onnx_logits(self.session, x, batch_size)
        if self.kind == "npz":
            layers = self.meta["pooling"], self.meta["activation"], self.meta["arch"]
            return weights.batched(lambda batch: reference.forward(self.params, batch, *layers), x, batch_size)
        run = RunFolder(self.source)
        return native_logits(self.kind, self.path, weights.meta_of(run.config(), len(self.classes)), x, batch_size)


def model_file(model):
    """(what opens it, the file) of `model`: an .onnx export is opened by onnxruntime, a model.npz
    by the numpy reference, a finished run folder's trained model by its framework."""
    path = Path(model)
    if path.suffix in (".onnx", ".npz"):
        if not path.is_file():
            raise ModelError(f"{model}: no such file")
        return path.suffix[1:], path
    if not path.exists():
        raise ModelError(f"{model}: no such run folder or file")
    if not path.is_dir():
        raise ModelError(f"{model}: not a run folder, a model.npz or an .onnx file")
    run = RunFolder(model)
    framework = run.config().framework
    path = run.final_model(framework)
    if not path.is_file():
        raise ModelError(f"{model}: no {path.name}: the run has not finished (train it to the end, or --resume it)")
    return framework, path


def classes_of(model):
    """Class names of a run folder, or of the run folder holding a model file; else the digits."""
    folder = RunFolder(model if Path(model).is_dir() else Path(model).parent)
    return folder.classes() if folder.is_run() else list(DIGITS)


def open_model(source, neutral=False):
    """The Model of `source`; with `neutral`, a run folder's is its model.npz, run by the numpy
    reference without its framework. RunError, WeightsError or ModelError say why it cannot be opened."""
    kind, path = model_file(source)
    classes = classes_of(source)
    if kind == "npz":
        return Model(Path(source), kind, path, classes, *weights.load(path))
    if kind == "onnx":
        from .onnx_export import session

        try:
            sess = session(path)
        except Exception as error:  # onnxruntime's own errors for a damaged or foreign file
            raise ModelError(f"cannot load {source}: {first_line(error)}") from None
        return Model(Path(source), kind, path, classes, session=sess)
    if not neutral:
        return Model(Path(source), kind, path, classes)
    npz = RunFolder(source).neutral_model()
    if not npz.is_file():
        raise ModelError(
            f"{source}: no {weights.FILENAME} there "
            f"(python -m lenet5.convert {source} --to npz --output {npz} writes it)"
        )
    return Model(Path(source), "npz", npz, classes, *weights.load(npz))
