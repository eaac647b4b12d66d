"""The models shipped in the repository, to try before training: models/<arch>/model.npz.

    make models                                  # train each from a seeded run and record it here
    python -m lenet5.pretrained RUN              # record a finished run as its architecture's model

`lenet5 predict` and `lenet5 serve` use the shipped LeNet-5 when given no run. Beside each
model.npz (the neutral weights, lenet5/network/weights.py), model.json records what made it: the command,
the framework and its version, the run's test accuracy and loss, and the file's SHA-256.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

from .arguments import HelpFormatter, Parser
from .config import ARCH_NAMES, FRAMEWORK_NAMES, ROOT
from .files import atomic_path, write_json
from .files import describe as describe_error
from .network import weights
from .training.runfolder import RunError, RunFolder

MODELS = ROOT / "models"
RECORD = "model.json"
PROG = "python -m lenet5.pretrained"


def model_path(arch="lenet5"):
    return MODELS / arch / weights.FILENAME


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record_of(arch="lenet5"):
    """What model.json says of the shipped model of `arch`."""
    return json.loads((MODELS / arch / RECORD).read_text())


def describe(arch="lenet5"):
    """One line for the user: which file, what made it, how well it does."""
    record = record_of(arch)
    return (
        f"the shipped model {model_path(arch).relative_to(ROOT)} ({ARCH_NAMES[arch]}, "
        f"{FRAMEWORK_NAMES[record['framework']]}, seed {record['seed']}, recipe {record['recipe']}: "
        f"test accuracy {record['test_accuracy']:.2%})"
    )


def publish(run_dir, command):
    """Copy a finished run's model.npz to models/<arch>/ and write model.json beside it; the path."""
    run = RunFolder(run_dir)
    cfg, result = run.config(), run.result()
    if not result:
        raise RunError(f"{run_dir}: the run has not finished")
    weights.load(run.neutral_model())  # a file that loads, or WeightsError
    target = model_path(cfg.arch)
    with atomic_path(target) as tmp:
        shutil.copyfile(run.neutral_model(), tmp)
    write_json(
        target.with_name(RECORD),
        {
            "file": weights.FILENAME,
            "sha256": sha256(target),
            "arch": cfg.arch,
            "framework": cfg.framework,
            "framework_version": result["framework_version"],
            "recipe": cfg.recipe,
            "seed": cfg.seed,
            "epochs": result["epochs"],
            "test_accuracy": result["test_accuracy"],
            "test_loss": result["test_loss"],
            "command": command,
        },
    )
    return target


def main(argv=None):
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("run", metavar="RUN_DIR", help="a finished run folder (of any framework)")
    parser.add_argument("--command", default="", help="the command that trained the run, to record")
    args = parser.parse_args(argv)
    try:
        target = publish(args.run, args.command)
    except (RunError, weights.WeightsError) as error:
        parser.exit(1, f"{PROG}: error: {error}\n")
    except OSError as error:
        parser.exit(1, f"{PROG}: error: {describe_error(error)}\n")
    print(f"recorded {describe(target.parent.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
