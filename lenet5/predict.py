"""Classify digits in pictures and videos with a trained run, whichever framework made it.

    python -m lenet5.predict runs/pytorch-max-relu-seed0-... photo.jpg scans/ clip.mp4
    python -m lenet5.predict RUN digits/ --top-k 3 --format csv --output predictions.csv
    python -m lenet5.predict RUN clip.mp4 --annotate-video clip-annotated.mp4

Every picture goes through lenet5.images.to_mnist first (grey, light background inverted,
cropped to the ink, scaled into 20x20, centred by centre of mass in 28x28), then the
normalisation the run was trained with. A video gives one row per frame. An input that
cannot be read gets one line on stderr and the others are still classified; the exit status
is then 1. When this interpreter lacks the run's framework, the command runs itself again in
that framework's environment (lenet5.envs.env_python).
"""
import csv
import functools
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import images, weights
from .cli import HelpFormatter, Parser, positive_int
from .config import FRAMEWORKS, Config
from .data import DIGITS, normalize
from .envs import env_python
from .files import atomic_path
from .reference import softmax
from .run import CLASSES

ROOT = Path(__file__).resolve().parent.parent
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
FORMATS = ("table", "csv", "json")
REEXEC = "LENET5_PREDICT_IN_ENV"  # set when re-run in the framework's environment: never loop


class PredictError(Exception):
    """The run cannot be used for predicting; the message says why."""


def read_run(run_dir):
    """(Config, class names) of a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise PredictError(f"{run_dir}: not a run folder (no config.json there)")
    try:
        cfg = Config.load(run_dir / "config.json")
        classes = json.loads((run_dir / CLASSES).read_text()) if (run_dir / CLASSES).exists() else list(DIGITS)
    except (ValueError, TypeError) as error:
        raise PredictError(f"{run_dir}: unreadable config.json or {CLASSES} ({error})") from None
    return cfg, classes


def load_run(run_dir):
    """A finished run's trained model, opened by its framework (model_<framework>/convert.py), as
    a function from normalised (N, 1, 28, 28) float32 batches to logits. ImportError when this
    Python lacks the framework."""
    cfg, classes = read_run(run_dir)
    if str(ROOT) not in sys.path:  # the model_<framework> folders are beside lenet5/
        sys.path.insert(0, str(ROOT))
    native = importlib.import_module(f"model_{cfg.framework}.convert")
    path = Path(run_dir) / ("model" + native.SUFFIX)
    if not path.is_file():
        raise PredictError(f"{run_dir}: no {path.name}: the run has not finished (train it to the end, or --resume it)")
    try:
        return native.native_model(path, weights.make_meta(cfg.pooling, cfg.activation, len(classes), cfg.framework))
    except Exception as error:  # truncated file, another architecture, not the framework's file at all
        raise PredictError(f"cannot load {path}: {str(error).splitlines()[0]}") from None


def _onnx(path):
    from .onnx_export import onnx_logits, session
    try:
        return functools.partial(onnx_logits, session(path))
    except Exception as error:  # onnxruntime's own errors for a damaged or foreign file
        raise PredictError(f"cannot load {path}: {str(error).splitlines()[0]}") from None


# Each backend turns a model (a run folder, or a file) into a function from normalised
# (N, 1, 28, 28) float32 batches to (N, classes) logits; ImportError when this Python lacks
# what it needs. Another kind of model file is one entry here and one line in backend_of.
BACKENDS = {**{name: load_run for name in FRAMEWORKS}, "onnx": _onnx}


def backend_of(model):
    """Which backend opens `model`: an .onnx file (python -m lenet5.onnx_export) needs only
    onnxruntime; a run folder names its framework in config.json."""
    if Path(model).suffix == ".onnx":
        if not Path(model).is_file():
            raise PredictError(f"{model}: no such file")
        return "onnx"
    return read_run(model)[0].framework


def classes_of(model):
    """Class names of a run folder, or of the run folder holding a model file; else the digits."""
    folder = Path(model) if Path(model).is_dir() else Path(model).parent
    return read_run(folder)[1] if (folder / "config.json").is_file() else list(DIGITS)


def expand(inputs):
    """(path, problem or None) per input, folders replaced by the pictures and videos in them
    (recursively, sorted); a folder with none is a problem, reported like a bad file."""
    found = []
    for given in map(Path, inputs):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in images.IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            found += [(p, None) for p in files] or [(given, "no pictures or videos in this folder")]
        else:
            found.append((given, None))
    return found


def read_video(path):
    """(frames as RGB arrays, frames per second) of a video or animated GIF, via imageio."""
    import imageio.v3 as iio  # imageio-ffmpeg brings its own ffmpeg
    try:
        frames, meta = list(iio.imiter(path)), iio.immeta(path)
        fps = meta.get("fps") or 1000 / meta.get("duration", 100)  # a GIF gives milliseconds per frame
    except Exception as error:  # imageio raises whatever its plugin raises on a bad file
        raise images.ImageError(f"unreadable video ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    if not frames:
        raise images.ImageError("a video without frames")
    return frames, fps


def gather(paths, errors, progress, keep_frames=False):
    """Preprocess every input: (28x28 digits, (input, frame or None) per digit, {video: (frames, fps)},
    the frames kept only if asked: to annotate them). A bad input or frame adds one line to
    `errors` and is left out."""
    digits, rows, videos = [], [], {}
    for path, problem in tqdm(paths, desc="read", unit="file", disable=not progress, leave=False):
        try:
            if problem:
                raise images.ImageError(problem)
            if not path.exists():
                raise images.ImageError("no such file")
            if path.stat().st_size == 0:
                raise images.ImageError("empty file")
            if path.suffix.lower() in VIDEO_SUFFIXES:
                frames, fps = read_video(path)
                videos[path] = (frames if keep_frames else None, fps)
                for number, frame in enumerate(frames):
                    try:
                        digits.append(images.to_mnist(images.to_grey(frame)))
                        rows.append((path, number))
                    except images.ImageError as error:
                        errors.append(f"{path} frame {number}: {error}")
            else:
                digits.append(images.to_mnist(images.load_image(path)))
                rows.append((path, None))
        except images.ImageError as error:
            errors.append(f"{path}: {error}")
    return digits, rows, videos


def classify(model, digits, batch_size, progress):
    """Class probabilities of 28x28 uint8 digits, through the run's normalisation."""
    probs = []
    for start in tqdm(range(0, len(digits), batch_size), desc="classify", disable=not progress, leave=False):
        x = normalize(np.stack(digits[start:start + batch_size]))
        probs.append(softmax(np.asarray(model(x), np.float64)))
    return np.concatenate(probs) if probs else np.zeros((0, 0))


def top_k(probs, classes, k):
    """Per row, the k most probable (class name, probability), best first."""
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(classes[i], float(p[i])) for i in row] for p, row in zip(probs, best)]


def render(rows, predictions, fmt, k):
    """The predictions as a table, CSV or JSON text."""
    records = [{"input": str(path), "frame": frame,
                "predictions": [{"class": name, "probability": round(p, 6)} for name, p in preds]}
               for (path, frame), preds in zip(rows, predictions)]
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    header = ["input", "frame"] + [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "probability")]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")  # text: the platform ends its lines
        writer.writerow(header)
        for record in records:
            writer.writerow([record["input"], "" if record["frame"] is None else record["frame"]] +
                            [v for pred in record["predictions"] for v in (pred["class"], f"{pred['probability']:.6f}")])
        return out.getvalue()
    table = [["input", "frame"] + [f"top {i}" for i in range(1, k + 1)]]
    for record in records:
        table.append([record["input"], "" if record["frame"] is None else str(record["frame"])] +
                     [f"{pred['class']} {pred['probability']:.1%}" for pred in record["predictions"]])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in table)


def annotate_video(out_path, frames, fps, labels):
    """Write the frames with each one's predicted class (or "?") drawn in its corner, as a video."""
    import imageio.v3 as iio
    from PIL import Image, ImageDraw, ImageFont
    drawn = []
    for frame, label in zip(frames, labels):
        image = Image.fromarray(np.asarray(frame)[..., :3] if np.ndim(frame) == 3 else np.asarray(frame)).convert("RGB")
        size = max(12, image.height // 5)
        font = ImageFont.load_default(size=size)
        draw = ImageDraw.Draw(image)
        draw.text((size // 4, size // 4), label, fill=(255, 0, 0), font=font, stroke_width=max(1, size // 12),
                  stroke_fill=(255, 255, 255))
        drawn.append(np.asarray(image))
    with atomic_path(out_path) as tmp:
        iio.imwrite(tmp, np.stack(drawn), fps=fps, extension=out_path.suffix)


def run_in_env(name, argv):
    """This command again, in the framework's own environment; its exit status."""
    python = env_python(name)
    if not python.exists():
        raise PredictError(f"the run was trained with {name}, which this Python lacks, and its "
                           f"environment {python} does not exist (make env-{name})")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([str(python), "-m", "lenet5.predict", *argv],
                          env=dict(os.environ, PYTHONPATH=path, **{REEXEC: "1"})).returncode


def build_parser(prog="python -m lenet5.predict"):
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0],
                    formatter_class=HelpFormatter)
    parser.add_argument("model", metavar="RUN_DIR", help="a finished run folder (of any framework), or an .onnx file "
                        "from python -m lenet5.onnx_export (class names from the run folder holding it)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="pictures (PNG, JPEG, ...), folders of them, videos (MP4, AVI, GIF, ...)")
    parser.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="classes shown per input")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument("--output", metavar="FILE", help="write the predictions here (never overwritten) instead of stdout")
    parser.add_argument("--annotate-video", metavar="OUT", help="write the one video input again with each frame's "
                        "predicted class drawn on it (never overwritten)")
    parser.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="images per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None, framework=None):
    """`framework`: only runs of this one (train_<framework>/predict.py)."""
    parser = build_parser(f"train_{framework}/predict.py" if framework else "python -m lenet5.predict")
    args = parser.parse_args(argv)
    for option in ("output", "annotate_video"):
        target = getattr(args, option)
        if target and Path(target).exists():
            parser.error(f"--{option.replace('_', '-')} {target} already exists; choose another name")
    paths = expand(args.inputs)
    videos_given = [p for p, _ in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if args.annotate_video and len(videos_given) != 1:
        parser.error(f"--annotate-video needs exactly one video among the inputs, got {len(videos_given)}")
    try:
        name = backend_of(args.model)
        if name not in BACKENDS:
            raise PredictError(f"{args.model}: unknown framework {name!r}")
        if framework and name != framework:
            raise PredictError(f"{args.model} was trained with {name}, not {framework}: "
                               f"use train_{name}/predict.py or python -m lenet5.predict")
        classes = classes_of(args.model)
        try:
            model = BACKENDS[name](args.model)
        except ImportError as error:  # not in this environment: run again in the framework's own
            if os.environ.get(REEXEC):
                raise PredictError(f"{sys.executable} cannot import {name} ({error})") from None
            return run_in_env(name, sys.argv[1:] if argv is None else list(argv))
    except PredictError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")

    errors = []
    digits, rows, videos = gather(paths, errors, not args.no_progress, keep_frames=bool(args.annotate_video))
    predictions = top_k(classify(model, digits, args.batch_size, not args.no_progress), classes,
                        min(args.top_k, len(classes)))
    text = render(rows, predictions, args.format, min(args.top_k, len(classes)))
    if args.output:
        with atomic_path(Path(args.output)) as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text)
    for line in errors:
        print(f"{parser.prog}: error: {line}", file=sys.stderr)
    if args.annotate_video and videos:
        (video, (frames, fps)), = videos.items()
        labels = {frame: preds[0][0] for (path, frame), preds in zip(rows, predictions) if path == video}
        annotate_video(Path(args.annotate_video), frames, fps, [labels.get(i, "?") for i in range(len(frames))])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
