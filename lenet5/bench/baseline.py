"""What the idiomatic baselines (bench/baseline_<framework>.py) share: their options and their
per-epoch timer. They import this module: numpy and the standard library only, beside their framework."""

from pathlib import Path

from .. import arguments
from ..config import Config, resolve_threads
from ..data.download import default_data_dir
from ..files import write_json


def baseline_args(framework, argv=None, devices=False, compiles=False):
    """The options of bench/baseline_<framework>.py: the train.py options the recipe needs, and
    --device and --compile if the script takes them (`devices`, `compiles`)."""
    parser = arguments.Parser(
        prog=f"bench/baseline_{framework}.py",
        formatter_class=arguments.HelpFormatter,
        description=f"Idiomatic {framework} training loop for python -m lenet5.bench.",
    )
    defaults = Config()
    parser.add_argument(
        "--epochs", type=arguments.positive_int, default=defaults.epochs, help="passes over the training split"
    )
    parser.add_argument(
        "--batch-size", type=arguments.positive_int, default=defaults.batch_size, help="images per step"
    )
    parser.add_argument(
        "--lr", type=arguments.positive_float, default=defaults.lr, help="peak learning rate (Adam, cosine)"
    )
    parser.add_argument("--seed", type=arguments.non_negative_int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--limit-train", type=arguments.non_negative_int, default=0, help="first N training images (0: all)"
    )
    parser.add_argument("--limit-test", type=arguments.non_negative_int, default=0, help="first N test images (0: all)")
    parser.add_argument("--data-dir", default=str(default_data_dir()), help="MNIST cache folder")
    parser.add_argument("--threads", type=arguments.non_negative_int, default=0, help="CPU threads (0: auto)")
    parser.add_argument("--output", required=True, help="JSON file for the measurements")
    if devices:
        parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where to train")
    if compiles:
        parser.add_argument("--compile", action="store_true", help="torch.compile the step instead of capturing it")
    args = parser.parse_args(argv)
    args.threads = resolve_threads(args.threads)
    return args


class EpochTimer:
    """Per-epoch seconds of training and of evaluation, and the test accuracy after each epoch."""

    def __init__(self):
        self.epochs = []

    def add(self, seconds, eval_seconds, test_acc):
        self.epochs.append({"seconds": seconds, "eval_seconds": eval_seconds, "test_acc": float(test_acc)})
        print(
            f"epoch {len(self.epochs)}: {seconds:.2f} s, test accuracy {test_acc:.2%} "
            f"(evaluated in {eval_seconds:.2f} s)",
            flush=True,
        )

    def write(self, path, n_train, n_test):
        write_json(Path(path), {"epochs": self.epochs, "n_train": n_train, "n_test": n_test})
