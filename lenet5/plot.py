"""Plots of a run folder: training curves, the confusion matrix and the misclassified images of
the test set, a sample of the dataset and of its augmented images, and what each layer of the
trained network does, as PNG files.

    python -m lenet5.plot runs/<run folder>                       # all six, into <run folder>/plots/
    python -m lenet5.plot RUN --what curves errors --output-dir figures/

The curves come from metrics.csv, the confusion matrix and the misclassified images from
test_predictions.npz (which train.py writes at the end of a run), the layers from model.npz
(through the numpy network, whichever framework trained it), their pixels and the sample from
the dataset the run trained on, loaded as config.json says. Framework-neutral: numpy and
matplotlib only, through Figure objects rather than pyplot, so that no GUI backend is involved.
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .arguments import HelpFormatter, Parser, folder, positive_int, prog
from .data import augment
from .data.idx import DataError
from .data.splits import MEAN, STD, augmenter, load_dataset, normalize, splits_of
from .files import atomic_path, describe
from .network import lecun98, reference, sdlm, weights
from .training.cli import augmentation
from .training.runfolder import PREDICTIONS, RunError, RunFolder
from .training.stopping import stops_cleanly

PLOTS = ("curves", "confusion", "errors", "samples", "augmented", "layers")
MAKER = "lenet5.plot"  # written into each PNG's metadata: a file that says so may be replaced
TRAIN, VAL = "tab:blue", "tab:orange"
SATURATED = 0.25  # a unit whose slope f' is below this share of its largest counts as saturated


class PlotError(Exception):
    """The run folder cannot be plotted; the message says why."""


def data_dir(cfg):
    """Where the run's dataset is: its --data-dir if that is still there, else the default cache."""
    return cfg.data_dir if cfg.data_dir and Path(cfg.data_dir).is_dir() else None


def load_images(cfg, split):
    """(uint8 images (N, H, W), labels) of the "train" or "test" split as the run `cfg` used them
    (the test set cut to --limit-test): MNIST, or the run's --dataset."""
    try:
        mnist = load_dataset(cfg.dataset, data_dir(cfg), progress=False)
    except DataError as error:
        raise PlotError(error) from None
    if split == "test":
        end = cfg.limit_test or None
        return mnist["test_images"][:end], mnist["test_labels"][:end].astype(np.int64)
    return mnist["train_images"], mnist["train_labels"].astype(np.int64)


def columns(rows):
    """metrics.csv's rows (RunFolder.metrics) as columns of floats ({} when no epoch has finished)."""
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]} if rows else {}


def curves_figure(metrics, cfg, title=""):
    """Loss and accuracy per epoch, training vs the held-out split: the validation split, or the
    test set for a run with --validate-on-test (the paper's Fig. 5 for a paper recipe's run)."""
    held_out = "test" if cfg.validate_on_test else "validation"
    loss = "MAP criterion" if cfg.arch == "lecun98" else "cross-entropy"
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, what, scale in zip(fig.subplots(1, 2), ("loss", "acc"), (1, 100)):
        for split, color in (("train", TRAIN), ("val", VAL)):
            values = metrics[f"{split}_{what}"] * scale
            if not np.isnan(values).all():  # a run without a validation split has no val curve
                ax.plot(
                    metrics["epoch"],
                    values,
                    "o-",
                    color=color,
                    markersize=3,
                    label="training" if split == "train" else held_out,
                )
        ax.set(
            xlabel="epoch",
            ylabel=loss if what == "loss" else "accuracy (%)",
            title="loss" if what == "loss" else "accuracy",
        )
        if what == "loss":
            ax.set_yscale("log")  # late epochs differ by orders of magnitude
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return fig


def confusion_matrix(labels, predictions, num_classes):
    """counts[true, predicted], and each true class's share of them (a row of zeros for a class
    without test images)."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts, counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def confusion_figure(labels, predictions, names, title=""):
    """Counts of (true, predicted) classes, with each class's accuracy on the right. The diagonal
    is blue by the class's accuracy; the mistakes red by their count, on their own scale, as they
    would all be near-white beside the diagonal's hundreds."""
    n = len(names)
    counts, share = confusion_matrix(labels, predictions, n)
    diagonal = np.eye(n, dtype=bool)
    mistakes = np.where(diagonal, 0, counts)
    shade = np.where(diagonal, share, 0.8 * mistakes / max(mistakes.max(), 1))
    colors = np.where(diagonal[..., None], colormaps["Blues"](shade), colormaps["Reds"](shade))
    colors[counts == 0] = 1.0  # white
    size = max(5.0, 0.5 * n + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    ax.imshow(colors)
    if n <= 30:  # beyond that, numbers would not fit their cells
        for (i, j), count in np.ndenumerate(counts):
            if count:
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shade[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(n), names, rotation=90 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted class", ylabel="true class")
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(n), [f"{share[i, i]:.1%}" if counts[i].sum() else "-" for i in range(n)])
    right.set_ylabel("accuracy of the class")
    ax.set_title(
        title
        or f"test set: {np.trace(counts):,} of {counts.sum():,} right ({np.trace(counts) / max(counts.sum(), 1):.2%})"
    )
    return fig


def image_grid(images, captions, columns, title, cell=1.1):
    """Images (None: an empty cell) in rows of `columns`, each with its caption."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(columns * cell, rows * cell * 1.15 + 0.5), layout="constrained")
    for ax, image, caption in zip(fig.subplots(rows, columns, squeeze=False).flat, images, captions):
        if image is not None:
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7, loc="left" if image is None else "center")
    for ax in fig.axes:
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


def errors_figure(images, labels, probability, names, limit=60):
    """The misclassified test images, the most confident mistakes first, with the true class,
    the predicted one and its probability."""
    predictions = probability.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-probability[wrong, predictions[wrong]], kind="stable")][:limit]
    captions = [
        f"true {names[labels[i]]}\npred {names[predictions[i]]} {probability[i, predictions[i]]:.2f}" for i in wrong
    ]
    shown = f"the {len(wrong)} most confident" if len(wrong) < (predictions != labels).sum() else "all"
    return image_grid(
        list(images[wrong]),
        captions,
        10,
        f"{(predictions != labels).sum():,} of {len(labels):,} test images misclassified; "
        f"{shown}, most confident first",
    )


def samples_figure(images, labels, names, per_class=10):
    """The first `per_class` images of each class: one row per class (blank where a class has fewer)."""
    cells, captions = [], []
    for c, name in enumerate(names):
        pick = list(np.flatnonzero(labels == c)[:per_class])
        cells += [images[i] for i in pick] + [None] * (per_class - len(pick))
        captions += [name] + [""] * (per_class - 1)
    return image_grid(cells, captions, per_class, f"training images, the first {per_class} of each class", cell=0.8)


def augmented_figure(images, labels, names, kinds, seed=0, per_class=10, used=True):
    """The first image of each class (first column), then `per_class - 1` distortions of it by
    --augment `kinds`, drawn as epochs 1, 2, ... of a run with `seed` draw them."""
    first = [np.flatnonzero(labels == c)[:1] for c in range(len(names))]
    pick = np.concatenate(first).astype(np.int64)
    x = normalize(images[pick])
    distort = augmenter(kinds)
    columns = [x] + [distort(x, (seed, epoch, 0)) for epoch in range(1, per_class)]
    pixels = [np.clip((c[:, 0] * STD + MEAN) * 255, 0, 255) for c in columns]
    cells = [pixels[j][i] for i in range(len(pick)) for j in range(per_class)]
    captions = [f"{names[labels[i]]}" if j == 0 else "" for i in pick for j in range(per_class)]
    how = "as this run trained" if used else "not used by this run"
    return image_grid(
        cells, captions, per_class, f"--augment {kinds} ({how}): each row one image, then distortions", 0.8
    )


def training_split(cfg):
    """The run's training images (normalised) and labels, its validation images left out, as it
    split them; undistorted."""
    try:
        split = splits_of(replace(cfg, data_dir=data_dir(cfg) or "", no_progress=True)).train
    except DataError as error:
        raise PlotError(error) from None
    return split.x, split.y


def layers_figure(params, meta, x, y, test_error=None, title="", mu=None):
    """What each layer of the trained network `params` (neutral, `meta` its header) does with
    the training images `x` (normalised) and labels `y`, through the numpy network: a histogram
    of each layer's outputs on the first sdlm.SAMPLES images, with the share of them saturated
    (f' below SATURATED of its largest: a unit that passes little gradient back) and the layer's
    largest weight; for lecun98, the paper's h of each layer's weights (Appendix C) on the same
    images, against `mu`, the run's SDLM mu if it trained with SDLM. The title gives the error on
    all of `x`: how well the network fits the images it trained on, undistorted."""
    arch, activation = meta.get("arch", "lenet5"), meta["activation"]

    def trace(images):
        return reference.trace(params, images, meta["pooling"], activation, arch)

    logits = weights.batched(lambda b: dict(trace(b))["output"], x, desc="layers: the training error")
    layers = [(name, out) for name, out in trace(x[: sdlm.SAMPLES]) if f"{name}.weight" in params and name != "output"]
    unit = "lecun98" if arch == "lecun98" else activation  # lecun98's units squash, whatever --activation says
    slope = reference.SLOPE[unit]
    panels = len(layers) + (arch == "lecun98")
    fig = Figure(figsize=(3.2 * min(panels, 4), 2.8 * -(-panels // 4) + 0.6), layout="constrained")
    axes = fig.subplots(-(-panels // 4), min(panels, 4), squeeze=False).flat
    for (name, out), ax in zip(layers, axes):  # layers first: zip then takes no extra axes
        saturated = (slope(out) < SATURATED).mean()
        ax.hist(out.ravel(), bins=60, color=TRAIN, log=True)
        largest = np.abs(params[f"{name}.weight"]).max()
        ax.set_title(f"{name.upper()}: {saturated:.0%} saturated\nlargest |weight| {largest:.3g}", fontsize=9)
        ax.set_xlabel("unit output", fontsize=8)
    if arch == "lecun98":
        ax = next(axes)
        h = sdlm.paper_hessian(params, x[: sdlm.SAMPLES])
        names = [name for name in lecun98.LAYERS if f"{name}.weight" in h]
        ax.bar([n.upper() for n in names], [np.median(h[f"{n}.weight"]) for n in names], color=VAL, log=True)
        heading = "the paper's h, median of each layer's weights"
        if mu is not None:  # the steps of weights with h well below it are at their ceiling, lr / mu
            ax.axhline(mu, color="black", lw=1, ls="--")
            heading += f"\ndashed: SDLM's mu = {mu:g}"
        ax.set_title(heading, fontsize=9)
    for ax in axes:  # the grid's empty cells
        ax.set_axis_off()
    wrong = (logits.argmax(axis=1) != y).mean()
    tested = "" if test_error is None else f", test error {test_error:.2%}"
    relu = " (ReLU: at 0)" if unit == "relu" else ""
    fig.suptitle(
        f"{title}: training error {wrong:.2%} on its {len(y):,} training images as they are{tested}\n"
        f"outputs of {min(len(x), sdlm.SAMPLES)} of them; saturated: f' under {SATURATED:.0%} of its largest{relu}",
        fontsize=10,
    )
    return fig


def is_ours(path, maker=MAKER):
    """Whether `path` is a PNG that `maker` wrote (and may therefore replace)."""
    try:
        with Image.open(path) as image:
            return image.text.get("Software") == maker
    except (OSError, ValueError, AttributeError):
        return False


def make_plots(run_dir, output_dir=None, what=PLOTS, per_class=10, max_errors=60, kinds=None):
    """Write the plots `what` of a run folder into output_dir (default <run>/plots); returns
    (paths written, notes on what was skipped and why). The augmented images are distorted by
    `kinds` (an --augment value), else by the run's own --augment, else by augment.SHOWN."""
    run = RunFolder(run_dir)
    output_dir = Path(output_dir) if output_dir else run.dir / "plots"
    targets = {name: output_dir / f"{name}.png" for name in what}
    foreign = [str(p) for p in targets.values() if p.exists() and not is_ours(p)]
    if foreign:  # checked before anything is written
        raise PlotError(f"{', '.join(foreign)} exists and was not made by {MAKER}; choose another --output-dir")
    cfg, names = run.config(), run.classes()
    metrics, predictions = columns(run.metrics()), run.predictions()
    figures, notes = {}, []
    if "curves" in what:
        if metrics:
            figures["curves"] = curves_figure(metrics, cfg, run.dir.name)
        else:
            notes.append("curves: no finished epoch in metrics.csv yet")
    if {"confusion", "errors"} & set(what):
        if predictions is None:
            notes.append(f"confusion, errors: no {PREDICTIONS} in the run folder (a run that has not finished)")
        else:
            if "confusion" in what:
                figures["confusion"] = confusion_figure(predictions["label"], predictions["prediction"], names)
            if "errors" in what:
                images, labels = load_images(cfg, "test")
                if len(labels) != len(predictions["label"]) or (labels != predictions["label"]).any():
                    raise PlotError(
                        f"the test set loaded from {cfg.data_dir or 'the cache'} does not match "
                        f"the labels in {run.path(PREDICTIONS)}"
                    )
                figures["errors"] = errors_figure(images, labels, predictions["probability"], names, max_errors)
    if "samples" in what:
        images, labels = load_images(cfg, "train")
        figures["samples"] = samples_figure(images, labels, names, per_class)
    if "augmented" in what:
        images, labels = load_images(cfg, "train")
        used = kinds or (cfg.augment if cfg.augment != augment.NONE else augment.SHOWN)
        figures["augmented"] = augmented_figure(images, labels, names, used, cfg.seed, per_class, used == cfg.augment)
    if "layers" in what:
        if run.neutral_model().is_file():
            params, meta = load_weights(run.neutral_model())
            test_error = None if predictions is None else (predictions["prediction"] != predictions["label"]).mean()
            mu = cfg.mu if cfg.optimizer == "sdlm" else None
            figures["layers"] = layers_figure(params, meta, *training_split(cfg), test_error, run.dir.name, mu)
        else:
            notes.append(f"layers: no {weights.FILENAME} in the run folder (a run that has not finished)")
    try:
        for name, fig in figures.items():
            with atomic_path(targets[name]) as tmp:  # whole or not at all
                fig.savefig(tmp, dpi=110, metadata={"Software": MAKER})
    except OSError as error:  # not allowed, a full disk
        raise PlotError(f"{describe(error)}; choose another --output-dir") from None
    return [targets[name] for name in figures], notes


def load_weights(path):
    try:
        return weights.load(path)
    except weights.WeightsError as error:
        raise PlotError(error) from None


def build_parser():
    parser = Parser(prog=prog("lenet5.plot"), description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by train.py")
    parser.add_argument(
        "--output-dir",
        type=folder(),
        metavar="DIR",
        help="where the PNGs go (default: RUN_DIR/plots); plots this command made "
        "earlier are replaced, any other file is never overwritten",
    )
    parser.add_argument(
        "--what", nargs="+", choices=PLOTS, metavar="PLOT", help=f"which plots, of {', '.join(PLOTS)} (default: all)"
    )
    parser.add_argument("--per-class", type=positive_int, default=10, metavar="N", help="sample images per class")
    parser.add_argument(
        "--augment",
        type=augmentation,
        metavar="KINDS",
        help=f"distortions of the augmented plot (default: the run's --augment, or {augment.SHOWN} for a run without)",
    )
    parser.add_argument(
        "--max-errors", type=positive_int, default=60, metavar="N", help="misclassified images shown at most"
    )
    return parser


@stops_cleanly(prog("lenet5.plot"))
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths, notes = make_plots(
            args.run_dir,
            args.output_dir,
            tuple(dict.fromkeys(args.what or PLOTS)),
            args.per_class,
            args.max_errors,
            None if args.augment == augment.NONE else args.augment,
        )
    except RunError as error:  # not a run folder, or a damaged one
        parser.error(str(error))
    except PlotError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    for path in paths:
        print(path)
    for note in notes:
        print(f"{parser.prog}: skipped {note}", file=sys.stderr)
    return 0 if paths else 1


if __name__ == "__main__":
    sys.exit(main())
