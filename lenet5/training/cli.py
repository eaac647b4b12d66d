"""The command line of every framework's train.py: one definition, so flags and defaults match."""

import argparse
import os
import sys
from pathlib import Path

from ..arguments import (
    HelpFormatter,
    Parser,
    folder,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    printable,
    run_name,
)
from ..config import (
    ACTIVATIONS,
    ARCHS,
    DEVICES,
    INITS,
    MAX_AUTO_THREADS,
    ONE_THREAD_BELOW,
    OPTIMIZERS,
    POOLINGS,
    RECIPES,
    ROOT,
    SCHEDULERS,
    Config,
    recipe_options,
)
from ..data import augment
from ..data.download import DOWNLOADABLE, TRAIN_SIZE, default_data_dir
from ..data.idx import DataError
from ..files import describe
from .runfolder import RunError, RunFolder
from .stopping import Interrupted, Stopped, signals_raise

DEFAULT_OUTPUT_DIR = ROOT / "runs"
# What a resumed run may change; every other option comes from the run's config.json.
RESUME_OVERRIDES = (
    "epochs",
    "device",
    "no_progress",
    "data_dir",
    "checkpoint_every",
    "threads",
    "tensorboard",
    "peer_timeout",
)


def recipe_help():
    """What each recipe sets, for --help."""
    return "; ".join(
        f"{name}: " + (" ".join(f"{flag(k)} {v}" for k, v in options.items()) or "the defaults shown here")
        for name, options in RECIPES.items()
    )


def augmentation(text):
    """An argparse type: --augment's value, in its one spelling ("affine,elastic", "none")."""
    try:
        return ",".join(augment.parse(text)) or augment.NONE
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


augmentation.__name__ = "augmentation"


def dataset(text):
    """A downloadable dataset's name, or a folder, made absolute so that a resumed run finds it
    from anywhere."""
    if text in DOWNLOADABLE:
        return text
    folder = Path(text).expanduser().resolve()
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text} (and not one of {', '.join(DOWNLOADABLE)})")
    return str(folder)


def build_parser(framework, description=None, with_defaults=True, recipe="default"):
    """train.py's parser; its defaults are those of `recipe`."""
    parser = Parser(
        prog=f"train_{framework}/train.py",
        description=description,
        formatter_class=HelpFormatter,
        argument_default=None if with_defaults else argparse.SUPPRESS,
    )

    recipes = parser.add_argument_group("recipe")
    recipes.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        help=f"a named set of options, which any option given overrides ({recipe_help()})",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--arch",
        choices=ARCHS,
        help="lenet5 (today's: C3 sees every S2 map, pooling, softmax) or lecun98 (the 1998 paper's: "
        "Table I, trainable subsampling, 1.7159 tanh(2a/3), RBF output, MAP loss; ignores --pooling, --activation)",
    )
    model.add_argument("--pooling", choices=POOLINGS, help="subsampling in S2 and S4 of lenet5")
    model.add_argument("--activation", choices=ACTIVATIONS, help="non-linearity after C1, C3, C5 and F6 of lenet5")
    model.add_argument(
        "--dropout", type=fraction, metavar="P", help="dropout rate before F6 and before the output layer, in training"
    )
    model.add_argument(
        "--init",
        choices=INITS,
        help="lecun98's initial weights: fan-in, U(+-2.4/F_i) as the paper's Appendix A writes it, or sqrt-fan-in, "
        "U(+-2.4/sqrt(F_i)), a subsampling coefficient's on the average of its inputs, with which the paper's rates "
        "train (docs/lecun98.md)",
    )

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=positive_int, metavar="N", help="passes over the training split")
    train.add_argument("--batch-size", type=positive_int, metavar="N", help="images per optimizer step")
    train.add_argument("--lr", type=positive_float, help="peak learning rate")
    train.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="adam, adamw (Adam with decoupled weight decay), sgd with --momentum, or sdlm (the 1998 paper's "
        "stochastic diagonal Levenberg-Marquardt, on summed gradients)",
    )
    train.add_argument("--momentum", type=non_negative_float, metavar="M", help="momentum of sgd (ignored by adam)")
    train.add_argument(
        "--mu",
        type=positive_float,
        metavar="MU",
        help="sdlm: each parameter steps by lr / (MU + h) times its gradient, h its Hessian diagonal, so at most "
        f"lr / MU (the paper's: {Config.mu}; the paper recipes': {RECIPES['paper']['mu']}, docs/lecun98.md)",
    )
    train.add_argument(
        "--weight-decay",
        type=non_negative_float,
        metavar="WD",
        help="adam and sgd: an L2 penalty added to the gradient (coupled, as torch.optim.Adam); adamw: "
        "decoupled, each weight shrunk by lr x WD every step (as torch.optim.AdamW)",
    )
    train.add_argument(
        "--label-smoothing",
        type=fraction,
        metavar="EPS",
        help="train on targets (1 - EPS) x one-hot + EPS / classes",
    )
    train.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="learning-rate schedule over all steps; paper: --lr for 2 epochs, then x0.4 for 3, x0.2 for 3, "
        "x0.1 for 4, then x0.02 (the 1998 paper's 0.0005 ... 0.00001)",
    )
    train.add_argument("--seed", type=non_negative_int, help="seeds weights, batch order and the framework")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        type=dataset,
        metavar="NAME|DIR",
        help=f"{' or '.join(DOWNLOADABLE)}; or a folder holding the four IDX files (.gz or not), "
        "or one subfolder of images per class (optionally inside train/ and test/)",
    )
    data.add_argument(
        "--augment",
        type=augmentation,
        metavar="KINDS",
        help=f"distort training batches: {augment.NONE}, or {', '.join(augment.KINDS)} (random shift, "
        "rotation, scale and shear; the 1998 paper's shift, scale, squeeze and shear; Simard's elastic "
        f"distortion), joined by ',' to combine them ({' or '.join(augment.AFFINE)}, not both)",
    )
    data.add_argument(
        "--val-size",
        type=non_negative_int,
        metavar="N",
        help=f"images held out of the {TRAIN_SIZE:,} training images for validation (0: none)",
    )
    data.add_argument(
        "--data-dir",
        type=folder(writable=False),
        metavar="DIR",
        help="dataset cache folder: MNIST, then fashion-mnist/ and image-folders/ in it (or set LENET5_DATA_DIR)",
    )
    data.add_argument(
        "--validate-on-test",
        action="store_true",
        help="evaluate on the test set after each epoch instead of the validation split: for "
        "measuring time to a test accuracy (the benchmark), never for choosing hyperparameters",
    )
    data.add_argument(
        "--limit-train",
        type=non_negative_int,
        metavar="N",
        help="train on the first N images only, for a quick smoke run (0: all)",
    )
    data.add_argument(
        "--limit-test", type=non_negative_int, metavar="N", help="test on the first N test images only (0: all 10,000)"
    )

    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", type=folder(), metavar="DIR", help="parent folder of run folders")
    run.add_argument(
        "--run-name",
        type=run_name,
        metavar="NAME",
        help="run folder name (default: framework-pooling-activation-seed-time); never overwritten",
    )
    run.add_argument("--resume", metavar="PATH", help="continue the run in this run folder (or its checkpoint file)")
    run.add_argument("--device", choices=DEVICES, help="auto: a GPU if the framework sees one, else the CPU")
    run.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        metavar="N",
        help="also checkpoint every N steps inside an epoch (0: at the end of each epoch only)",
    )
    run.add_argument(
        "--peer-timeout",
        type=positive_int,
        metavar="S",
        help="data-parallel runs (docs/distributed.md): seconds to wait for the other processes, at start "
        "and at every step, before stopping with one line",
    )
    run.add_argument(
        "--threads",
        type=non_negative_int,
        metavar="N",
        help=f"CPU threads (0: $OMP_NUM_THREADS if set, else 1 for batches under {ONE_THREAD_BELOW} images, "
        f"else the cores, at most {MAX_AUTO_THREADS})",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars (the per-epoch lines remain)")
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the per-epoch metrics into <run folder>/tensorboard/ (view with: tensorboard --logdir runs/)",
    )

    if with_defaults:
        defaults = {**Config(framework=framework).to_dict(), **recipe_options(recipe), "recipe": recipe}
        defaults.update(data_dir=str(default_data_dir()), output_dir=str(DEFAULT_OUTPUT_DIR))
        del defaults["framework"]
        parser.set_defaults(**defaults)
    return parser


def early_value(argv, option, default, kind=str):
    """One option's value in a command line, read before the full parse needs it; `default` when
    it is absent or malformed (the full parse reports that)."""
    early = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    early.add_argument(option, type=kind, default=default, dest="value")
    try:
        return early.parse_known_args(argv)[0].value
    except argparse.ArgumentError:
        return default


def threads_before_import(argv):
    """An explicit --threads N of a command line as OMP_NUM_THREADS, for MXNet, which sizes its
    engine's OpenMP pool when it is imported (MXSetNumOMPThreads later reaches only the calling
    thread). A bad value is left for the full parse to report."""
    threads = early_value(argv, "--threads", 0, int)
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def recipe_of(argv):
    """The --recipe of a command line (default if none, or one the full parse will refuse)."""
    name = early_value(argv, "--recipe", "default")
    return name if name in RECIPES else "default"


def flag(name):
    return "--" + name.replace("_", "-")


def run_command(framework, train, argv=None, description=None, grouped=None):
    """A train.py's main(): parse its command line, call `train(cfg)`, and end a run that cannot go
    on with one line and an exit status (128 + the signal after Ctrl-C or SIGTERM, as a shell
    reports it: 130, 143; 1 after an error). `grouped()`: whether this process is one of a
    data-parallel run's; one that failed, or lost the others, then leaves at once with its status,
    without the interpreter's teardown, where each framework's group misbehaves with a peer gone:
    MXNet's kvstore barrier waits for ever, TensorFlow's worker once ended by SIGSEGV, and gloo
    aborted PyTorch's rank 0 (SIGABRT) after its one line in 2 of about 15 runs."""
    code = _run_command(framework, train, argv, description)
    if code and grouped and grouped():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_command(framework, train, argv, description):
    with signals_raise():  # until training starts (lenet5.training.run.Run.stopping), a signal stops at once
        try:
            train(parse_args(framework, argv, description))  # a signal may come while the options are read
        except Stopped as stop:  # a checkpoint at the end of the current step
            print(f"\n{printable(str(stop))}", file=sys.stderr)
            return 128 + stop.signum
        except Interrupted as stop:  # before the run folder was written to
            print(f"\n{stop}: stopped before training began", file=sys.stderr)
            return 128 + stop.signum
        except (DataError, RunError) as error:  # a download that failed lists each mirror on a line
            lines = map(printable, str(error).split("\n"))
            print("train.py: error: " + "\n".join(lines), file=sys.stderr)
            return 1
        except OSError as error:  # a full disk or a damaged one before training began
            print(f"train.py: error: {printable(describe(error))}", file=sys.stderr)
            return 1
    return 0


def parse_args(framework, argv=None, description=None):
    """Parse a train.py command line into a Config, with its --recipe's options where no other is
    given; with --resume, the run's own config."""
    parser = build_parser(framework, description, recipe=recipe_of(argv))
    cfg = Config(framework=framework, **vars(parser.parse_args(argv)))
    if cfg.optimizer == "sdlm" and cfg.arch != "lecun98":
        parser.error("--optimizer sdlm: its Hessian is derived for lecun98's output and loss; use --arch lecun98")
    if not cfg.resume:
        return cfg

    run_dir = Path(cfg.resume).expanduser().resolve()
    if run_dir.is_file():
        run_dir = run_dir.parent
    if RunFolder(run_dir).is_unstarted():  # its run was stopped as it began: start it there now
        cfg.resume = str(run_dir)
        return cfg
    try:
        saved = RunFolder(run_dir).config()
    except RunError as error:
        parser.error(f"--resume {cfg.resume}: {error}")
    if saved.framework != framework:
        parser.error(f"--resume {cfg.resume}: that run was trained with {saved.framework}, not {framework}")
    given = vars(build_parser(framework, with_defaults=False).parse_args(argv))
    for name, value in given.items():
        if name in RESUME_OVERRIDES:
            setattr(saved, name, value)
        elif name != "resume" and value != getattr(saved, name):
            parser.error(
                f"{flag(name)} {value} differs from the resumed run's {getattr(saved, name)}; "
                f"a resumed run keeps its options except {', '.join(map(flag, RESUME_OVERRIDES))}"
            )
    saved.resume = str(run_dir)
    return saved
