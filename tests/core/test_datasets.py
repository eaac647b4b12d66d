"""--dataset: Fashion-MNIST through a fake mirror, a folder of IDX files, a folder of class
folders of images; and every way each can be wrong. Tiny files written here."""

import gzip
import hashlib
import json
import re

import numpy as np
import pytest
from conftest import write_idx
from PIL import Image, ImageDraw

from lenet5.config import Config
from lenet5.data import download, images, splits
from lenet5.data.idx import DataError
from lenet5.training import cli

SHAPES = {  # class name -> how to draw it: three classes LeNet-5 could tell apart
    "bar": lambda d, s: d.rectangle((s // 2 - 3, 4, s // 2 + 3, s - 5), fill=0),
    "ring": lambda d, s: d.ellipse((5, 5, s - 6, s - 6), outline=0, width=4),
    "cross": lambda d, s: (
        d.line((5, 5, s - 6, s - 6), fill=0, width=4),
        d.line((5, s - 6, s - 6, 5), fill=0, width=4),
    ),
}


def idx_files(folder, n_train=12, n_test=4, shape=(28, 28), gz=True, num_classes=10):
    """The four IDX files of a tiny dataset; returns {name: .gz bytes}."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *shape)),
        "train-labels-idx1-ubyte": rng.integers(0, num_classes, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *shape)),
        "t10k-labels-idx1-ubyte": rng.integers(0, num_classes, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return {name: (folder / f"{name}.gz").read_bytes() for name in arrays} if gz else arrays


def image_folder(root, per_class=5, classes=SHAPES):
    """root/<class>/<i>.png: each class's shape, drawn at assorted sizes, dark on white."""
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = 30 + 17 * i
            image = Image.new("L", (size, size), 255)
            SHAPES[name](ImageDraw.Draw(image), size)
            image.save(root / name / f"{i}.png")
    return root


@pytest.fixture
def fashion_mirror(tmp_path, monkeypatch):
    """A file:// Fashion-MNIST mirror of tiny .gz files, their MD5s patched in."""
    mirror = tmp_path / "fashion-mirror"
    gz = idx_files(mirror)
    monkeypatch.setattr(download, "FASHION_FILES", {name: hashlib.md5(b).hexdigest() for name, b in gz.items()})
    monkeypatch.setenv("LENET5_FASHION_MNIST_MIRRORS", mirror.as_uri())
    return mirror, gz


def test_fashion_mnist_downloads_from_its_own_mirrors_checked_by_md5(fashion_mirror, tmp_path):
    mirror, gz = fashion_mirror
    cache = tmp_path / "cache"
    loaded = splits.load_splits(val_size=2, data_dir=cache, progress=False, dataset="fashion-mnist")
    assert loaded.classes == list(download.FASHION_CLASSES) and loaded.classes[9] == "Ankle boot"
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (10, 2, 4)
    for name, content in gz.items():  # kept as the published .gz, beside (not over) MNIST's files
        assert (cache / "fashion-mnist" / f"{name}.gz").read_bytes() == content
    assert not (cache / "train-images-idx3-ubyte").exists()
    for path in mirror.iterdir():  # the cache is now enough
        path.unlink()
    assert splits.load_dataset("fashion-mnist", cache, progress=False)["test_images"].shape == (4, 28, 28)


def test_fashion_mnist_wrong_files_fail_the_md5_and_name_its_variable(fashion_mirror, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong"
    idx_files(wrong, n_train=13)  # well-formed, but not the expected files
    monkeypatch.setenv("LENET5_FASHION_MNIST_MIRRORS", wrong.as_uri())
    with pytest.raises(DataError) as error:
        splits.load_dataset("fashion-mnist", tmp_path / "cache", progress=False)
    assert "wrong content (MD5 of the .gz file differs)" in str(error.value)
    assert "LENET5_FASHION_MNIST_MIRRORS" in str(error.value) and "Fashion-MNIST .gz files" in str(error.value)


def test_fashion_mnist_public_mirrors(monkeypatch):
    monkeypatch.delenv("LENET5_FASHION_MNIST_MIRRORS", raising=False)
    monkeypatch.delenv("LENET5_MNIST_MIRRORS", raising=False)
    assert download.mirrors("fashion-mnist")[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert download.mirrors("mnist") == list(download.DEFAULT_MIRRORS)  # MNIST's unchanged


@pytest.mark.parametrize("gz", [True, False])
def test_a_folder_of_idx_files(tmp_path, gz):
    idx_files(tmp_path / "idx", gz=gz, num_classes=4)
    loaded = splits.load_dataset(str(tmp_path / "idx"), tmp_path / "cache", progress=False)
    assert loaded["train_images"].shape == (12, 28, 28) and len(loaded["test_labels"]) == 4
    assert loaded["classes"] == [
        str(c) for c in range(max(loaded["train_labels"].max(), loaded["test_labels"].max()) + 1)
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: idx_files(f, shape=(32, 32)), "train-images-idx3-ubyte has shape (12, 32, 32), not (N, 28, 28)"),
        (
            lambda f: (idx_files(f), write_idx(f / "t10k-labels-idx1-ubyte.gz", np.zeros(5))),
            "t10k-labels-idx1-ubyte has shape (5,), but there are 4 t10k images",
        ),
        (
            lambda f: (idx_files(f), (f / "t10k-images-idx3-ubyte.gz").unlink()),
            "no t10k-images-idx3-ubyte (or t10k-images-idx3-ubyte.gz)",
        ),
        (lambda f: (idx_files(f), (f / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b junk")), "unreadable"),
    ],
)
def test_bad_idx_folders_say_what_is_wrong(tmp_path, make, message):
    folder = tmp_path / "idx"
    make(folder)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        splits.load_dataset(str(folder), tmp_path / "cache", progress=False)


def test_a_folder_of_class_folders_is_converted_split_and_cached(tmp_path, monkeypatch):
    folder = image_folder(tmp_path / "shapes", per_class=7)
    (folder / "ring" / "notes.txt").write_text("not an image: ignored")
    loaded = splits.load_splits(val_size=3, data_dir=tmp_path / "cache", progress=False, dataset=str(folder))
    assert loaded.classes == ["bar", "cross", "ring"]  # the subfolders' names, sorted
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (18 - 3, 3, 3)  # 21 // 7 to test
    assert loaded.train.x.shape[1:] == (1, 28, 28)
    (cached,) = (tmp_path / "cache" / "image-folders").iterdir()
    assert cached.name.startswith("shapes-") and cached.suffix == ".npz"

    def no_conversion(grey):
        raise AssertionError("converted again despite the cache")

    monkeypatch.setattr(images, "to_mnist", no_conversion)
    again = splits.load_splits(val_size=3, data_dir=tmp_path / "cache", progress=False, dataset=str(folder))
    np.testing.assert_array_equal(again.test.x, loaded.test.x)
    assert again.classes == loaded.classes
    monkeypatch.undo()
    image_folder(tmp_path / "more", per_class=1, classes=["bar"])
    (tmp_path / "more" / "bar" / "0.png").rename(folder / "bar" / "extra.png")  # the folder changed
    grown = splits.load_dataset(str(folder), tmp_path / "cache", progress=False)
    assert len(grown["train_labels"]) + len(grown["test_labels"]) == 22


def test_train_and_test_folders_are_the_given_split(tmp_path):
    image_folder(tmp_path / "given" / "train", per_class=4)
    image_folder(tmp_path / "given" / "test", per_class=2, classes=["bar", "ring"])
    loaded = splits.load_dataset(str(tmp_path / "given"), tmp_path / "cache", progress=False)
    assert loaded["classes"] == ["bar", "cross", "ring"]
    assert len(loaded["train_labels"]) == 12 and sorted(loaded["test_labels"]) == [0, 0, 2, 2]


def test_unreadable_images_are_skipped_with_one_line(tmp_path, capsys):
    folder = image_folder(tmp_path / "shapes", per_class=7)
    (folder / "bar" / "broken.png").write_bytes(b"not a png")
    loaded = splits.load_dataset(str(folder), tmp_path / "cache", progress=False)
    assert len(loaded["train_labels"]) + len(loaded["test_labels"]) == 21
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 1 unreadable image(s)" in err and "broken.png" in err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: f.mkdir(), "no class folders"),
        (lambda f: (image_folder(f), (f / "empty").mkdir()), "empty: no readable image in this class folder"),
        (
            lambda f: (image_folder(f), (f / "junk").mkdir(), (f / "junk" / "a.png").write_bytes(b"junk")),
            "junk: no readable image in this class folder",
        ),
        (
            lambda f: (
                image_folder(f / "train"),
                image_folder(f / "test", classes=["bar", "ring"]),
                (f / "test" / "star").mkdir(),
            ),
            "class folder(s) star not in",
        ),
        (lambda f: image_folder(f, per_class=2), "6 readable images are too few"),
    ],
)
def test_bad_image_folders_say_what_is_wrong(tmp_path, make, message):
    folder = tmp_path / "mine"
    make(folder)
    with pytest.raises(DataError, match=re.escape(message)):
        splits.load_dataset(str(folder), tmp_path / "cache", progress=False)


def test_dataset_option(tmp_path, monkeypatch, capsys):
    assert cli.parse_args("pytorch", []).dataset == "mnist" == Config().dataset
    assert cli.parse_args("mxnet", ["--dataset", "fashion-mnist"]).dataset == "fashion-mnist"
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    assert cli.parse_args("pytorch", ["--dataset", "mine"]).dataset == str(tmp_path / "mine")  # absolute
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args("pytorch", ["--dataset", "nowhere"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "--dataset: no such folder: nowhere (and not one of mnist, fashion-mnist)" in err


def test_val_size_is_checked_against_the_datasets_own_size(tmp_path):
    folder = image_folder(tmp_path / "shapes", per_class=7)
    with pytest.raises(
        DataError, match=r"--val-size must be between 0 and 17 \(the .*shapes training images\), got 5000"
    ):
        splits.load_splits(data_dir=tmp_path / "cache", progress=False, dataset=str(folder))


def test_a_resumed_run_keeps_its_dataset(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(Config(dataset="fashion-mnist").to_dict()))
    assert cli.parse_args("pytorch", ["--resume", str(run_dir)]).dataset == "fashion-mnist"
    with pytest.raises(SystemExit):
        cli.parse_args("pytorch", ["--resume", str(run_dir), "--dataset", "mnist"])
    assert "--dataset mnist differs from the resumed run's fashion-mnist" in capsys.readouterr().err


def test_gzip_of_cached_fashion_file_is_verified_on_load(fashion_mirror, tmp_path):
    _, gz = fashion_mirror
    cache = tmp_path / "cache"
    splits.load_dataset("fashion-mnist", cache, progress=False)
    name = "train-images-idx3-ubyte"
    (cache / "fashion-mnist" / f"{name}.gz").write_bytes(gzip.compress(b"damaged"))
    splits.load_dataset("fashion-mnist", cache, progress=False)  # fetched again
    assert (cache / "fashion-mnist" / f"{name}.gz").read_bytes() == gz[name]
