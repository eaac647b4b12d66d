"""Classify digits in pictures and videos with a TensorFlow (Keras 3) run (see lenet5/predict.py).

    python predict.py runs/<run folder> photo.jpg digits/ clip.mp4 --top-k 3

Kept parallel to train_pytorch/predict.py and train_mxnet/predict.py: each is this framework's
command line; reading, preprocessing, output and opening the model (model_tensorflow/convert.py) are
lenet5.predict's.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenet5.predict import main as predict_main

FRAMEWORK = "tensorflow"


def main(argv=None):
    return predict_main(argv, framework=FRAMEWORK)


if __name__ == "__main__":
    sys.exit(main())
