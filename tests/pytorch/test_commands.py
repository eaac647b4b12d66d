"""predict, convert, lenet5.onnx_export and lenet5.plot against what users and machines throw at
them: any command line (hypothesis), a full disk, a long video."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, peak_memory
from digit_pictures import write_pictures
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from lenet5 import convert, onnx_export, plot, predict
from lenet5.data.download import load_mnist

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def run_dir(mnist_dir, tmp_path_factory):
    """A small finished PyTorch run."""
    out = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, str(ROOT / "train_pytorch" / "train.py"), "--epochs", "1", "--limit-train", "4096"]
    cmd += ["--val-size", "0", "--limit-test", "500", "--data-dir", str(mnist_dir), "--output-dir", str(out)]
    subprocess.run([*cmd, "--run-name", "small", "--no-progress"], check=True, capture_output=True)
    return out / "small"


@pytest.fixture(scope="module")
def inputs(mnist_dir, tmp_path_factory):
    """Pictures, a folder of them, a video, and things that are none of these."""
    folder = tmp_path_factory.mktemp("inputs")
    mnist = load_mnist(mnist_dir, progress=False)
    pictures = write_pictures(mnist["test_images"][:3], mnist["test_labels"][:3], folder / "pictures")
    (folder / "empty").mkdir()
    (folder / "text.png").write_text("not a picture")
    (folder / "file").write_text("a file")
    video = folder / "clip.gif"
    Image.fromarray(255 - mnist["test_images"][0]).save(
        video, save_all=True, append_images=[Image.fromarray(255 - d) for d in mnist["test_images"][1:4]]
    )
    return [pictures[0], folder / "pictures", folder / "empty", folder / "text.png", video, folder / "missing.png"]


def anything():
    return st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10)


def arguments(*values):
    """One of `values` (two times in three), else any short text."""
    return st.one_of(st.sampled_from([str(v) for v in values]), st.sampled_from([str(v) for v in values]), anything())


def run_main(main, argv, capsys, cwd="."):
    try:
        with pytest.MonkeyPatch.context() as patch:  # where relative names land (contextlib.chdir: 3.11+)
            patch.chdir(cwd)
            status = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse; or sys.exit("message"), which Python prints with status 1
        status = exit_.code
    out, err = capsys.readouterr()
    if isinstance(status, str):
        status, err = 1, err + status + "\n"
    assert "Traceback" not in err, err
    return status, out, err


@SETTINGS
@given(data=st.data())
def test_predict_any_command_line_gives_predictions_or_one_line_per_problem(
    run_dir, inputs, tmp_path_factory, capsys, data
):
    scratch = tmp_path_factory.mktemp("predict")
    (scratch / "existing").write_text("keep me")
    outputs = [scratch / "out.csv", scratch / "existing", scratch / "existing" / "under", scratch / "new" / "o.mp4"]
    argv = [
        data.draw(arguments(run_dir, run_dir / "model.npz", scratch / "existing", scratch, scratch / "nothing")),
        *data.draw(st.lists(st.sampled_from(inputs), min_size=1, max_size=4)),
        "--no-progress",
    ]
    for option, values in {
        "--top-k": arguments(1, 3, 10, 11, 0, -1),
        "--format": arguments("table", "csv", "json", "xml"),
        "--output": arguments(*outputs),
        "--annotate-video": arguments(*outputs),
        "--batch-size": arguments(1, 7, 256, 0),
    }.items():
        if data.draw(st.booleans(), label=f"with {option}"):
            argv.append(f"{option}={data.draw(values, label=option)}")
    status, out, err = run_main(predict.main, argv, capsys, scratch)
    event(f"exit status {status}")
    assert (scratch / "existing").read_text() == "keep me"
    assert status in (0, 1, 2), status
    if status == 2:  # the command line: one line
        assert len(err.strip().splitlines()) == 1, err
    else:  # which model, when none was given; then one line per input that could not be read
        lines = err.strip().splitlines()
        lines = lines[1:] if lines and lines[0].startswith("python -m lenet5.predict: no run given: ") else lines
        assert all(line.startswith("python -m lenet5.predict: error: ") for line in lines), err


@SETTINGS
@given(data=st.data())
def test_convert_any_command_line_writes_every_file_or_nothing_and_one_line(run_dir, tmp_path_factory, capsys, data):
    scratch = tmp_path_factory.mktemp("convert")
    (scratch / "existing.pt").write_text("keep me")
    source = data.draw(arguments(run_dir, run_dir / "model.npz", run_dir / "config.json", scratch / "nothing"))
    argv = [source, f"--to={data.draw(arguments('pytorch', 'npz', 'onnx'))}"]
    if data.draw(st.booleans()):
        names = ["out", "model.pt", "model.npz", "model.keras", "existing.pt", "existing.pt/under", "a/b/c.npz", ""]
        argv.append(f"--output={data.draw(arguments(*(scratch / n for n in names)))}")
    before = sorted(scratch.rglob("*"))
    status, out, err = run_main(convert.main, argv, capsys, scratch)
    event(f"exit status {status}")
    assert (scratch / "existing.pt").read_text() == "keep me"
    if status == 0:
        written = [line.removeprefix("wrote ") for line in out.split("\n") if line.startswith("wrote ")]
        assert written and all((scratch / path).is_file() for path in written), out
    else:
        assert status in (1, 2) and len(err.strip().splitlines()) == 1, err
        assert sorted(scratch.rglob("*")) == before  # nothing half-made


def test_a_full_disk_gives_one_line_naming_the_file_and_leaves_nothing(run_dir, inputs, small_disk, capsys):
    disk = small_disk
    commands = {
        "predict --output": (predict.main, [run_dir, inputs[0], "--no-progress", "--output", disk.path / "p.csv"]),
        **{
            f"predict --annotate-video (.{suffix})": (
                predict.main,
                [run_dir, inputs[4], "--no-progress", "--annotate-video", disk.path / f"a.{suffix}"],
            )
            for suffix in ("gif", "mp4")
        },
        "convert": (convert.main, [run_dir, "--to", "pytorch", "--output", disk.path / "converted"]),
        "onnx_export": (onnx_export.main, [run_dir, "--output", disk.path / "model.onnx"]),
        "plot": (plot.main, [run_dir, "--what", "curves", "confusion", "--output-dir", disk.path / "plots"]),
    }
    for name, (main, argv) in commands.items():
        disk.leave(0)
        status, out, err = run_main(main, argv, capsys)
        assert status == 1 and len(err.strip().splitlines()) == 1, (name, err)
        assert str(disk.path) in err and "No space left on device" in err, (name, err)
        left = [p for p in disk.path.rglob("*") if p != disk.filler and p.is_file()]
        assert not left, (name, left)
        disk.filler.unlink()  # with room, the same command works
        status, out, err = run_main(main, argv, capsys)
        assert status == 0, (name, err)
        for path in disk.path.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_a_long_video_is_read_and_annotated_one_frame_at_a_time(run_dir, mnist_dir, tmp_path):
    import imageio.v2 as iio

    mnist = load_mnist(mnist_dir, progress=False)
    video = tmp_path / "long.mp4"  # 600 frames of 640 x 480: 550 MB decoded
    with iio.get_writer(video, fps=25) as writer:
        for digit in mnist["test_images"][:600]:
            frame = Image.fromarray(255 - digit).resize((360, 360)).convert("RGB")
            page = Image.new("RGB", (640, 480), "white")
            page.paste(frame, (140, 60))
            writer.append_data(np.asarray(page))
    one = tmp_path / "one.png"
    Image.fromarray(255 - mnist["test_images"][0]).save(one)
    base, _ = peak_memory("-m", "lenet5.predict", run_dir, one, "--no-progress")
    memory, output = peak_memory(
        "-m",
        "lenet5.predict",
        run_dir,
        video,
        "--no-progress",
        "--format",
        "csv",
        "--annotate-video",
        tmp_path / "a.mp4",
    )
    assert output.count("\n") == 601, output[-500:]  # a header and one row per frame
    assert memory < base + 200e6, (memory, base)
