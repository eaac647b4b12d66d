"""Classify digits in pictures and videos with a trained run, whichever framework made it.

    python -m lenet5.predict runs/pytorch-max-relu-seed0-... photo.jpg scans/ clip.mp4
    python -m lenet5.predict photo.jpg                # no run: the shipped model (models/lenet5/)
    python -m lenet5.predict RUN digits/ --top-k 3 --format csv --output predictions.csv
    python -m lenet5.predict RUN clip.mp4 --annotate-video clip-annotated.mp4

Every picture goes through lenet5.data.images.to_mnist first (grey, light background inverted,
cropped to the ink, scaled into 20x20, centred by centre of mass in 28x28), then the
normalisation the run was trained with. A model.npz is run by the numpy reference, as the
shipped model is, which predicts when the first argument is not a model. A video gives one row
per frame. An input that cannot be read gets one line on stderr and the others are still
classified; the exit status is then 1. The run's model is opened by its own framework: here
when this interpreter has it, else in that framework's environment (lenet5.envs.call).
"""

import contextlib
import csv
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import pretrained
from .arguments import HelpFormatter, Parser, new_file, positive_int, printable, prog
from .convert import ConvertError
from .data import images
from .data.splits import normalize
from .files import atomic_path, describe, first_line, write_text
from .models import ModelError, open_model
from .network import reference, weights
from .training.runfolder import RunError, RunFolder
from .training.stopping import stops_cleanly

PROG = prog("lenet5.predict")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
FORMATS = ("table", "csv", "json")


def names_a_model(arg):
    """Whether predict's first argument is the model (else it is the first input, and the shipped
    model predicts): a run folder, an .onnx or .npz file, or a name that is none of the inputs'
    kinds and does not exist (a mistyped run folder is reported as one)."""
    path = Path(arg)
    if path.suffix.lower() in (".onnx", ".npz"):
        return True
    if path.is_dir():
        return RunFolder(path).is_run()
    return not path.exists() and path.suffix.lower() not in images.IMAGE_SUFFIXES + VIDEO_SUFFIXES


def expand(inputs):
    """(path, problem or None) per input, folders replaced by the pictures and videos in them
    (recursively, sorted); a folder with none is a problem, reported like a bad file."""
    found = []
    for given in map(Path, inputs):
        if given.is_dir():
            files = sorted(
                p
                for p in given.rglob("*")
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in images.IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            found += [(p, None) for p in files] or [(given, "no pictures or videos in this folder")]
        else:
            found.append((given, None))
    return found


def read_video(path):
    """(frames per second, an iterator over the frames as RGB arrays) of a video or animated GIF,
    via imageio: decoded one at a time, as they are used, so any length fits in memory."""
    import imageio.v3 as iio  # imageio-ffmpeg brings its own ffmpeg

    with _video_errors():
        meta = iio.immeta(path)
        fps = meta.get("fps") or 1000 / meta.get("duration", 100)  # a GIF gives milliseconds per frame
        images.check_size(*(meta.get("size") or meta.get("shape") or (0, 0)))

    def frames():
        with _video_errors():
            yield from iio.imiter(path)

    return fps, frames()


@contextlib.contextmanager
def _video_errors():
    """imageio raises whatever its plugin raises on a bad file: one ImageError instead."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # frames of a GIF, as images.load_image
            yield
    except images.ImageError:
        raise
    except Exception as error:
        raise images.ImageError(f"unreadable video ({first_line(error)})") from None


def gather(paths, errors, progress):
    """Preprocess every input: (28x28 digits, (input, frame or None) per digit, {video: (frames per
    second, number of frames)}). A bad input or frame adds one line to `errors` and is left out."""
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
                fps, frames = read_video(path)
                count = 0
                for count, frame in enumerate(frames, 1):
                    try:
                        digits.append(images.to_mnist(images.to_grey(frame)))
                        rows.append((path, count - 1))
                    except images.ImageError as error:
                        errors.append(f"{path} frame {count - 1}: {error}")
                if not count:
                    raise images.ImageError("a video without frames")
                videos[path] = (fps, count)
            else:
                digits.append(images.to_mnist(images.load_image(path)))
                rows.append((path, None))
        except images.ImageError as error:
            errors.append(f"{path}: {error}")
    return digits, rows, videos


def top_k(probs, classes, k):
    """Per row, the k most probable (class name, probability), best first."""
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(classes[i], float(p[i])) for i in row] for p, row in zip(probs, best)]


def render(rows, predictions, fmt, k):
    """The predictions as a table, CSV or JSON text."""
    records = [
        {
            "input": str(path),
            "frame": frame,
            "predictions": [{"class": name, "probability": round(p, 6)} for name, p in preds],
        }
        for (path, frame), preds in zip(rows, predictions)
    ]
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    header = ["input", "frame"] + [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "probability")]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")  # text: the platform ends its lines
        writer.writerow(header)
        for record in records:
            writer.writerow(
                [record["input"], "" if record["frame"] is None else record["frame"]]
                + [v for pred in record["predictions"] for v in (pred["class"], f"{pred['probability']:.6f}")]
            )
        return out.getvalue()
    table = [["input", "frame"] + [f"top {i}" for i in range(1, k + 1)]]
    for record in records:
        table.append(
            [record["input"], "" if record["frame"] is None else str(record["frame"])]
            + [f"{pred['class']} {pred['probability']:.1%}" for pred in record["predictions"]]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in table)


def annotate_video(out_path, video, labels):
    """Write the frames of `video` with each one's predicted class (or "?") drawn in its corner, as a
    video: read, drawn and written one frame at a time (a GIF, which Pillow writes whole, at once)."""
    import imageio.v2 as iio  # its ffmpeg writer takes one frame at a time
    import imageio.v3 as iio3

    fps, frames = read_video(video)
    labelled = (drawn(frame, label) for frame, label in zip(frames, labels))
    with atomic_path(out_path, replace=False) as tmp:
        if tmp.suffix.lower() == ".gif":
            first, *rest = (Image.fromarray(frame) for frame in labelled)
            first.save(tmp, save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
        else:
            try:
                with iio.get_writer(tmp, fps=fps) as writer:
                    for frame in labelled:
                        writer.append_data(frame)
                iio3.immeta(tmp)  # ffmpeg can end without a word when the disk is full: is the video whole?
            except images.ImageError:
                raise
            except Exception as error:  # ffmpeg's broken pipe, a video that cannot be opened
                raise OSError(f"ffmpeg could not write the video ({first_line(error)})") from None  # full disk: ENOSPC


def drawn(frame, label):
    """A video frame as RGB with `label` drawn in its corner, red on white, a fifth of its height."""
    from PIL import ImageDraw, ImageFont

    image = Image.fromarray(np.asarray(frame)[..., :3] if np.ndim(frame) == 3 else np.asarray(frame)).convert("RGB")
    size = max(12, image.height // 5)
    ImageDraw.Draw(image).text(
        (size // 4, size // 4),
        label,
        fill=(255, 0, 0),
        font=ImageFont.load_default(size=size),
        stroke_width=max(1, size // 12),
        stroke_fill=(255, 255, 255),
    )
    return np.asarray(image)


def build_parser(prog=PROG):
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "model",
        nargs="?",
        metavar="RUN_DIR",
        help="a finished run folder (of any framework), a model.npz, or an .onnx file from python -m "
        "lenet5.onnx_export (class names from the run folder holding it); left out, the shipped model "
        f"({pretrained.model_path().relative_to(pretrained.ROOT)})",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="pictures (PNG, JPEG, ...), folders of them, videos (MP4, AVI, GIF, ...)",
    )
    parser.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="classes shown per input")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument(
        "--output",
        type=new_file,
        metavar="FILE",
        help="write the predictions here (never overwritten) instead of stdout",
    )
    parser.add_argument(
        "--annotate-video",
        type=new_file,
        metavar="OUT",
        help="write the one video input again with each frame's predicted class drawn on it (never overwritten)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="images per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@stops_cleanly(PROG)
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model is not None and not names_a_model(args.model):
        args.model, args.inputs = None, [args.model, *args.inputs]
    paths = expand(args.inputs)
    videos_given = [p for p, _ in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if args.annotate_video and args.annotate_video.suffix.lower() not in VIDEO_SUFFIXES:
        parser.error(f"--annotate-video {args.annotate_video}: name a video file ({', '.join(VIDEO_SUFFIXES)})")
    if args.annotate_video and len(videos_given) != 1:
        parser.error(f"--annotate-video needs exactly one video among the inputs, got {len(videos_given)}")
    if args.model is None:  # said once the command line is known to be good
        args.model = pretrained.model_path()
        print(f"{parser.prog}: no run given: {pretrained.describe()}", file=sys.stderr)
    errors = []
    try:
        model = open_model(args.model)  # before reading the inputs: a model that cannot be used stops here
        classes = model.classes
        digits, rows, videos = gather(paths, errors, not args.no_progress)
        logits = model.logits(normalize(np.stack(digits)), args.batch_size) if digits else np.zeros((0, len(classes)))
        predictions = top_k(reference.softmax(np.asarray(logits, np.float64)), classes, min(args.top_k, len(classes)))
        text = render(rows, predictions, args.format, min(args.top_k, len(classes)))
        if args.output:
            write_text(args.output, text, replace=False)
        else:
            sys.stdout.write(text)
        if args.annotate_video and videos:
            ((video, (_, count)),) = videos.items()
            labels = {frame: preds[0][0] for (path, frame), preds in zip(rows, predictions) if path == video}
            annotate_video(args.annotate_video, video, [labels.get(i, "?") for i in range(count)])
    except (ModelError, ConvertError, RunError, weights.WeightsError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    except OSError as error:  # a full disk, or an --output that appeared meanwhile
        parser.exit(1, f"{parser.prog}: error: {describe(error)}\n")
    except images.ImageError as error:  # the annotated video's input, read again, went bad
        parser.exit(1, f"{parser.prog}: error: {args.annotate_video}: {error}\n")
    for line in errors:
        print(f"{parser.prog}: error: {printable(line)}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
