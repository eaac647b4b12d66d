"""predict and image-folder datasets on real MNIST, with PyTorch runs (the fastest framework):
digits drawn as users' pictures, videos, bad inputs, and a dataset of MNIST PNGs."""

import csv
import io
import json
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import ROOT, read_json
from digit_pictures import write_pictures, write_video
from PIL import Image

from lenet5 import predict
from lenet5.data.download import load_mnist

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir, progress=False)


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """A PyTorch run of one epoch on all of MNIST (about 98% on its test set)."""
    out = tmp_path_factory.mktemp("runs")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_pytorch" / "train.py"),
            "--epochs",
            "1",
            "--val-size",
            "0",
            "--data-dir",
            str(mnist_dir),
            "--output-dir",
            str(out),
            "--run-name",
            "digits",
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    return out / "digits"


def run_predict(capsys, *argv):
    """(exit status, stdout, stderr) of python -m lenet5.predict, in this process."""
    try:
        code = predict.main([str(a) for a in (*argv, "--no-progress")])
    except SystemExit as exit_:  # a mistake in the command line, or an unusable run
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_mnist_test_digits_as_pictures_of_random_size_on_white_are_classified_at_95_percent(
    trained, mnist, tmp_path, capsys
):
    n = 1000
    write_pictures(mnist["test_images"][:n], mnist["test_labels"][:n], tmp_path / "pictures")
    code, out, err = run_predict(capsys, trained, tmp_path / "pictures", "--format", "json", "--top-k", "2")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert len(rows) == n and [len(r["predictions"]) for r in rows] == [2] * n
    truth = [r["input"].rsplit("-", 1)[1][0] for r in rows]  # <index>-<label>.png
    accuracy = np.mean([r["predictions"][0]["class"] == t for r, t in zip(rows, truth)])
    with capsys.disabled():
        print(f"accuracy on {n} MNIST test digits drawn dark on white at random sizes: {accuracy:.2%}")
    assert accuracy >= 0.95
    first = rows[0]["predictions"]
    assert first[0]["probability"] >= first[1]["probability"] and sum(p["probability"] for p in first) <= 1


def test_a_video_of_digit_frames_gives_one_prediction_per_frame(trained, mnist, tmp_path, capsys):
    digits, labels = mnist["test_images"][:20], mnist["test_labels"][:20]
    video = write_video(digits, tmp_path / "digits.mp4")
    code, out, err = run_predict(
        capsys, trained, video, "--format", "csv", "--top-k", "1", "--annotate-video", tmp_path / "annotated.mp4"
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["frame"]) for r in rows] == list(range(20)) and {r["input"] for r in rows} == {str(video)}
    assert np.mean([r["class_1"] == str(y) for r, y in zip(rows, labels)]) >= 0.9
    annotated, original = iio.imread(tmp_path / "annotated.mp4", index=None), iio.imread(video, index=None)
    assert annotated.shape == original.shape  # every frame, the same size, with the class drawn on it
    assert np.abs(annotated.astype(int) - original).max() > 100
    # An animated GIF is a video too.
    iio.imwrite(tmp_path / "digits.gif", np.stack([255 - d for d in digits[:5]]), duration=200, loop=0)
    code, out, _ = run_predict(capsys, trained, tmp_path / "digits.gif", "--format", "csv", "--top-k", "1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["frame"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert sum(r["class_1"] == str(y) for r, y in zip(rows, labels)) >= 4  # the GIF's frames read as its digits


def test_each_bad_input_gets_its_message_and_the_others_are_still_classified(trained, mnist, tmp_path, capsys):
    (good,) = write_pictures(mnist["test_images"][:1], mnist["test_labels"][:1], tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("this is not a picture")
    (bad / "cut.png").write_bytes(good.read_bytes()[:200])
    Image.new("RGB", (64, 48), "white").save(bad / "blank.jpg")
    (bad / "noise.mp4").write_bytes(b"\x00" * 512)
    (tmp_path / "nothing").mkdir()
    code, out, err = run_predict(capsys, trained, bad, tmp_path / "missing.png", tmp_path / "nothing", good)
    assert code == 1
    lines = err.splitlines()
    for name, message in [
        ("empty.png", "empty file"),
        ("text.png", "not an image"),
        ("cut.png", "unreadable image"),
        ("blank.jpg", "no digit found"),
        ("noise.mp4", "unreadable video"),
        ("missing.png", "no such file"),
        ("nothing", "no pictures or videos in this folder"),
    ]:
        (line,) = [line for line in lines if f"{name}: " in line]  # one line per input
        assert line.startswith("python -m lenet5.predict: error: ") and message in line, line
    assert len(lines) == 7
    assert out.splitlines()[1].startswith(str(good)) and len(out.splitlines()) == 2  # the good one: classified


def test_run_level_mistakes_get_one_line(trained, tmp_path, capsys):
    picture = tmp_path / "x.png"
    Image.new("L", (30, 30), 255).save(picture)
    code, _, err = run_predict(capsys, tmp_path / "mistyped-run", picture)  # a folder of pictures would be inputs
    assert code == 1 and "mistyped-run: no such run folder or file" in err and err.count("\n") == 1
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained, unfinished)
    (unfinished / "model.pt").unlink()
    code, _, err = run_predict(capsys, unfinished, picture)
    assert code == 1 and "no model.pt: the run has not finished" in err and err.count("\n") == 1
    (tmp_path / "taken.csv").write_text("mine")
    for argv, message in [
        (["--output", tmp_path / "taken.csv"], "--output"),
        (["--annotate-video", tmp_path / "out.mp4"], "needs exactly one video"),
        (["--top-k", "0"], "--top-k: must be > 0"),
        (["--format", "xml"], "invalid choice: 'xml'"),
    ]:
        code, _, err = run_predict(capsys, trained, picture, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert (tmp_path / "taken.csv").read_text() == "mine"


def test_the_command_from_any_folder_gives_the_same_table(trained, mnist, tmp_path, capsys):
    pictures = write_pictures(mnist["test_images"][:3], mnist["test_labels"][:3], tmp_path / "p")
    _, expected, _ = run_predict(capsys, trained, *pictures)
    proc = subprocess.run(
        [sys.executable, "-m", "lenet5.predict", str(trained), *map(str, pictures), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout == expected, proc.stderr
    assert expected.splitlines()[0].split() == ["input", "frame", "top", "1", "top", "2", "top", "3"]


def test_an_onnx_export_of_the_run_predicts_what_the_run_does(trained, mnist, tmp_path, capsys):
    from lenet5 import onnx_export

    pictures = write_pictures(mnist["test_images"][:20], mnist["test_labels"][:20], tmp_path / "p")
    onnx_file, _ = onnx_export.export(trained, tmp_path / "lenet5.onnx")
    code, from_run, _ = run_predict(capsys, trained, *pictures, "--format", "json")
    assert code == 0
    code, from_onnx, err = run_predict(capsys, onnx_file, *pictures, "--format", "json")
    assert code == 0 and err == ""
    for a, b in zip(json.loads(from_run), json.loads(from_onnx), strict=True):
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]
        np.testing.assert_allclose(
            [p["probability"] for p in a["predictions"]], [p["probability"] for p in b["predictions"]], atol=1e-5
        )
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    code, _, err = run_predict(capsys, tmp_path / "broken.onnx", *pictures)
    assert code == 1 and "cannot load" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_folder_of_mnist_pngs_trains_to_95_percent_and_predict_uses_its_class_names(
    mnist, mnist_dir, tmp_path, capsys
):
    folder = tmp_path / "digits"
    for split, images, labels, n in [
        ("train", mnist["train_images"], mnist["train_labels"], 6000),
        ("test", mnist["test_images"], mnist["test_labels"], 1000),
    ]:
        for name in NAMES:
            (folder / split / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(images[i]).save(folder / split / NAMES[labels[i]] / f"{i:05d}.png")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_pytorch" / "train.py"),
            "--dataset",
            str(folder),
            "--epochs",
            "4",
            "--batch-size",
            "64",
            "--val-size",
            "500",
            "--data-dir",
            str(tmp_path / "cache"),
            "--output-dir",
            str(tmp_path / "runs"),
            "--run-name",
            "folder",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "folder"
    result = read_json(run_dir / "result.json")
    with capsys.disabled():  # the training's lines, for pytest -s
        print(proc.stdout)
    assert result["test_accuracy"] >= 0.95 and "5,500 train / 500 val / 1,000 test images" in proc.stdout
    assert read_json(run_dir / "classes.json") == sorted(NAMES)
    assert read_json(run_dir / "config.json")["dataset"] == str(folder)
    code, out, _ = run_predict(capsys, run_dir, *sorted((folder / "test" / "seven").iterdir())[:20], "--format", "json")
    assert code == 0 and sum(r["predictions"][0]["class"] == "seven" for r in json.loads(out)) >= 18


@pytest.mark.slow
def test_a_three_class_folder_gives_a_three_class_model_in_every_file(mnist, tmp_path, capsys):
    from lenet5 import onnx_export
    from lenet5.network import weights

    folder = tmp_path / "three"
    for name in NAMES[:3]:
        (folder / name).mkdir(parents=True)
    for i in np.flatnonzero(mnist["train_labels"] < 3)[:900]:
        Image.fromarray(mnist["train_images"][i]).save(folder / NAMES[mnist["train_labels"][i]] / f"{i:05d}.png")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train_pytorch" / "train.py"),
            "--dataset",
            str(folder),
            "--epochs",
            "1",
            "--val-size",
            "100",
            "--data-dir",
            str(tmp_path / "cache"),
            "--output-dir",
            str(tmp_path / "runs"),
            "--run-name",
            "three",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "three"
    params, meta = weights.load(run_dir / "model.npz")
    assert meta["num_classes"] == 3 and params["output.weight"].shape == (3, 84)
    onnx_file, _ = onnx_export.export(run_dir)
    pictures = sorted((folder / "two").iterdir())[:5]
    code, out, err = run_predict(capsys, onnx_file, *pictures, "--format", "json", "--top-k", "5")
    assert code == 0, err
    assert {p["class"] for r in json.loads(out) for p in r["predictions"]} == {"zero", "one", "two"}
    # the 1998 network's output has the ten digits' bitmaps: three classes get one line
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train_pytorch" / "train.py"), "--arch", "lecun98", "--dataset", str(folder)]
        + ["--epochs", "1", "--val-size", "100", "--data-dir", str(tmp_path / "cache")]
        + ["--output-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "--arch lecun98: its RBF output has the ten digits' bitmaps; this dataset has 3 classes" in proc.stderr


@pytest.mark.slow
def test_a_lecun98_run_predicts_from_its_smallest_rbf_output_and_plots(mnist_dir, mnist, tmp_path, capsys):
    from lenet5 import plot
    from lenet5.data.splits import normalize
    from lenet5.network import reference, weights

    out = tmp_path / "runs"
    subprocess.run(
        [sys.executable, str(ROOT / "train_pytorch" / "train.py"), "--arch", "lecun98", "--batch-size", "32"]
        + ["--lr", "0.001", "--epochs", "1", "--val-size", "0", "--data-dir", str(mnist_dir)]
        + ["--output-dir", str(out), "--run-name", "paper", "--no-progress"],
        check=True,
        capture_output=True,
    )
    n = 300
    write_pictures(mnist["test_images"][:n], mnist["test_labels"][:n], tmp_path / "pictures")
    code, out_, err = run_predict(capsys, out / "paper", tmp_path / "pictures", "--format", "json")
    assert code == 0 and err == ""
    rows = json.loads(out_)
    truth = [r["input"].rsplit("-", 1)[1][0] for r in rows]
    assert np.mean([r["predictions"][0]["class"] == t for r, t in zip(rows, truth)]) >= 0.85
    # the class is the RBF unit nearest its bitmap: the smallest y_i, the largest output -y_i
    params, meta = weights.load(out / "paper" / "model.npz")
    layers = dict(reference.trace(params, normalize(mnist["test_images"][:50]), arch=meta["arch"]))
    y = ((layers["f6"][:, None, :] - params["output.weight"][None]) ** 2).sum(axis=2)
    np.testing.assert_allclose(-y, layers["output"])
    # (not its layers: the numpy network over 60,000 training images takes a minute; test_plot.py checks them)
    plots = ["--what", "confusion", "errors", "--output-dir", str(tmp_path / "plots")]
    assert plot.main([str(out / "paper"), *plots]) == 0
    assert (tmp_path / "plots" / "confusion.png").exists()
