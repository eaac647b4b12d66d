"""Classify digits in pictures and videos with an MXNet (Gluon) run (see lenet5/predict.py).

    python predict.py runs/<run folder> photo.jpg digits/ clip.mp4 --top-k 3

Kept parallel to train_pytorch/predict.py and train_tensorflow/predict.py: each only loads its
framework's model; reading, preprocessing and output are lenet5.predict's.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenet5.predict import PredictError, main as predict_main, read_run
from model_mxnet import LeNet5  # first: an ImportError that says how to fix MXNet's numpy
import mxnet as mx
from train_mxnet.train import FRAMEWORK, WEIGHTS


def load_model(run_dir):
    """The run's trained model as a function from normalised (N, 1, 28, 28) float32 batches to logits."""
    cfg, classes = read_run(run_dir)
    path = Path(run_dir) / (WEIGHTS + ".params")
    if not path.is_file():
        raise PredictError(f"{run_dir}: no {path.name}: the run has not finished (train it to the end, or --resume it)")
    model = LeNet5(num_classes=len(classes), pooling=cfg.pooling, activation=cfg.activation)
    try:
        model.load_parameters(str(path), ctx=mx.cpu())
    except Exception as error:  # truncated file, another architecture, not parameters at all
        raise PredictError(f"cannot load {path}: {str(error).splitlines()[0]}") from None
    model.hybridize()

    def logits(x):
        return model(mx.nd.array(x)).asnumpy()
    return logits


def main(argv=None):
    return predict_main(argv, framework=FRAMEWORK)


if __name__ == "__main__":
    sys.exit(main())
