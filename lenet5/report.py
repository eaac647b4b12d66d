"""Build a sweep's results.csv, results.md and results.png from its study, on any machine.

python -m lenet5.report runs/sweep
python -m lenet5.report results/ --storage postgresql+psycopg://... --study NAME --fetch-best best.npz
"""

import sys
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta

from .arguments import HelpFormatter, Parser, new_file, prog
from .files import atomic_path, describe
from .sweeps import study, tables
from .training.stopping import stops_cleanly


# The original PyTorch project's table (batch 256, one run per cell), for comparison.
def fetch_best(sweep_study, storage, url, output):
    """Write the best trial's model.npz (its validation accuracy the highest) to `output`."""
    try:
        best = sweep_study.best_trial
    except ValueError:
        raise study.StudyError(f"study {sweep_study.study_name!r} has no finished trial yet") from None
    metas = get_all_artifact_meta(best, storage=storage)
    if not metas:
        raise study.StudyError(f"trial {best.number} ({best.user_attrs.get('name')}) kept no weights")
    with atomic_path(output, replace=False) as tmp:
        download_artifact(
            artifact_store=study.artifact_store(url), file_path=str(tmp), artifact_id=metas[-1].artifact_id
        )
    return best


@stops_cleanly(prog("lenet5.report"))
def main(argv=None):
    parser = Parser(prog=prog("lenet5.report"), description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder: the results files go there")
    parser.add_argument(
        "--storage", metavar="URL", help=f"the study's storage (default: the folder's {study.DEFAULT_DB})"
    )
    parser.add_argument("--study", metavar="NAME", help="the study's name (default without --storage: sweep)")
    parser.add_argument(
        "--fetch-best",
        metavar="FILE",
        type=new_file,
        help="also write the best trial's model.npz here (never overwritten), from any machine",
    )
    args = parser.parse_args(argv)
    if args.storage and not args.study:
        parser.error("--storage needs --study NAME")
    url = args.storage or f"sqlite:///{args.sweep_dir.resolve() / study.DEFAULT_DB}"
    if not args.storage and not (args.sweep_dir / study.DEFAULT_DB).is_file():
        parser.error(f"{args.sweep_dir} is not a sweep folder (no {study.DEFAULT_DB}); give --storage and --study")
    try:
        storage = study.open_storage(url)
        sweep_study = optuna.load_study(study_name=args.study or "sweep", storage=storage)
        if study.SPACE not in sweep_study.user_attrs:
            raise study.StudyError(f"study {sweep_study.study_name!r} was not made by python -m lenet5.sweep")
        tables.write(args.sweep_dir, sweep_study)
        if args.fetch_best:
            best = fetch_best(sweep_study, storage, url, args.fetch_best)
            print(
                f"wrote {args.fetch_best}: trial {best.number}, {best.user_attrs['name']}, "
                f"validation accuracy {best.value:.2%}"
            )
    except KeyError:
        parser.error(f"no study {args.study or 'sweep'!r} in {study.redacted(url)}")
    except study.StudyError as error:
        parser.error(str(error))
    except OSError as error:  # not allowed, a full disk
        parser.exit(1, f"{parser.prog}: error: {describe(error)}\n")
    print((args.sweep_dir / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
