"""The options every framework's train.py shares: names, valid choices, defaults, and the LR schedule.

The defaults are the recipe chosen on the validation split (docs/results.md, "How the
default recipe was chosen"); the test set played no part in choosing them. Also here: the
constants every part of the project shares (the project folder, the frameworks and their names).
"""

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project folder (the package is installed editable)
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet")
FRAMEWORK_NAMES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "mxnet": "MXNet"}  # as people write them
ARCHS = ("lenet5", "lecun98")  # today's LeNet-5; the network of the 1998 paper (lenet5/network/lecun98.py)
ARCH_NAMES = {"lenet5": "LeNet-5", "lecun98": "LeNet-5 of 1998"}
POOLINGS = ("max", "avg")
# lecun98's initial weights: the paper's U(+-2.4 / F_i), or U(+-2.4 / sqrt(F_i)), with which its learning
# rates train (lenet5/network/lecun98.py)
INITS = ("fan-in", "sqrt-fan-in")
ACTIVATIONS = ("relu", "leakyrelu", "tanh", "sigmoid")
OPTIMIZERS = ("adam", "adamw", "sgd", "sdlm")
SCHEDULERS = ("none", "cosine", "paper")
DEVICES = ("auto", "cpu", "gpu")
LEAKY_SLOPE = 0.01  # negative slope of leakyrelu, as PyTorch's default
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # stated once: Keras' default epsilon differs (1e-7)


def check_choice(kind, name, valid):
    """Return `name` if it is one of `valid`, else raise ValueError listing the valid ones."""
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}")
    return name


@dataclass
class Config:
    framework: str = "pytorch"
    recipe: str = "default"
    # model
    arch: str = "lenet5"
    pooling: str = "max"
    activation: str = "relu"
    dropout: float = 0.0
    init: str = "fan-in"
    # training
    epochs: int = 15
    batch_size: int = 256
    lr: float = 5e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    mu: float = 0.02  # sdlm's: each step is lr / (mu + h) times the gradient, at most lr / mu; the paper's
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    scheduler: str = "cosine"
    seed: int = 0
    # data
    dataset: str = "mnist"
    augment: str = "none"
    val_size: int = 5000
    validate_on_test: bool = False
    data_dir: str = ""
    limit_train: int = 0
    limit_test: int = 0
    # run
    output_dir: str = ""
    run_name: str = ""
    resume: str = ""
    device: str = "auto"
    checkpoint_every: int = 0
    peer_timeout: int = 120  # seconds a data-parallel run waits for its other processes
    threads: int = 0
    no_progress: bool = False
    tensorboard: bool = False

    def to_dict(self):
        return asdict(self)


# The 1998 paper's own training: SDLM at its rates, one image a step, 20 passes over all 60,000
# training images; but for the initialisation, whose weighted sums vanish as Appendix A writes it,
# and then diverge at these rates, and mu, twice the paper's: its 0.02 on half its loss, as the
# authors' later library EBLearn writes the Euclidean energy, 0.5 sum (x - t)^2 (docs/lecun98.md).
PAPER = {
    "arch": "lecun98",
    "init": "sqrt-fan-in",
    "optimizer": "sdlm",
    "mu": 0.04,
    "scheduler": "paper",
    "lr": 5e-4,
    "epochs": 20,
    "batch_size": 1,
    "val_size": 0,
}

# Named recipes: each sets these options (the others keep Config's defaults), and any option
# given on the command line overrides its recipe. Chosen on the validation split, never on the
# test set (docs/results.md, "How the recipes were chosen"): best, the highest validation
# accuracy; fast, the shortest training time to 99.0%.
RECIPES = {
    "default": {},
    "best": {"augment": "paper", "label_smoothing": 0.2, "epochs": 20},
    "fast": {"epochs": 2, "batch_size": 96, "label_smoothing": 0.1},
    "paper": PAPER,
    # The same on the paper's distortions: its 20 passes of 60,000 images drawn from 600,000 (the
    # originals and 540,000 distortions), as --augment paper draws them afresh each pass.
    "paper-distorted": {**PAPER, "augment": "paper"},
}


def model_name(arch, pooling, activation):
    """The model in a run's name: its pooling and activation, or lecun98, which has its own."""
    return arch if arch == "lecun98" else f"{pooling}-{activation}"


def recipe_options(name):
    """All the options recipe `name` trains with: Config's defaults and the recipe's own."""
    return {**Config().to_dict(), **RECIPES[check_choice("recipe", name, tuple(RECIPES))]}


# The 1998 paper's schedule, relative to its first rate: 0.0005 for 2 passes, 0.0002 for 3, 0.0001
# for 3, 0.00005 for 4, then 0.00001 for the rest: (passes, factor).
PAPER_SCHEDULE = ((2, 1.0), (3, 0.4), (3, 0.2), (4, 0.1), (None, 0.02))


def lr_at(cfg, step, total_steps):
    """Learning rate for optimizer step `step` (0-based) of `total_steps`: one schedule for all
    three frameworks, applied by each train.py before every step."""
    if cfg.scheduler == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    if cfg.scheduler == "paper":  # the 1998 paper's steps down, pass by pass, from --lr
        epoch, start = step * cfg.epochs // max(total_steps, 1) + 1, 1
        for passes, factor in PAPER_SCHEDULE:
            if passes is None or epoch < start + passes:
                return cfg.lr * factor
            start += passes
    return cfg.lr


# LeNet-5's layers are small: past a few threads a step spends more time handing work out than
# computing, so --threads 0 (auto) takes the cores this process may use, at most this many; and
# one thread for batches below ONE_THREAD_BELOW images, whose operations are too small to share
# (--recipe paper's one image a step, PyTorch, beside another run on 2 cores: 9.2 s for 2,000
# images on one thread, 110 s on two).
MAX_AUTO_THREADS = 4
ONE_THREAD_BELOW = 16


def resolve_threads(threads=0, batch_size=None):
    """The CPU threads a framework should use: `threads` if given, else $OMP_NUM_THREADS (as set
    by the sweep for parallel runs), else one for a small `batch_size`, else the usable cores up
    to MAX_AUTO_THREADS."""
    if threads:
        return threads
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    if batch_size is not None and batch_size < ONE_THREAD_BELOW:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, MAX_AUTO_THREADS)
