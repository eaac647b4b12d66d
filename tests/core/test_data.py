"""MNIST download, verification, IDX parsing, splits and batches, on tiny files the tests write."""

import numpy as np
import pytest
from conftest import write_idx

from lenet5.data import download, idx, splits
from lenet5.data.idx import DataError


def test_parse_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = write_idx(tmp_path / "x", images)
    np.testing.assert_array_equal(idx.parse_idx(raw), images)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda raw: b"\x01" + raw[1:], "bad magic number"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "not unsigned byte"),
        (lambda raw: raw[:6], "truncated IDX header"),
        (lambda raw: raw[:-1], "header promises shape (2, 3, 4) (24 bytes) but 23 bytes follow"),
        (lambda raw: raw + b"\x00", "but 25 bytes follow"),
        (lambda raw: b"", "bad magic number"),
    ],
)
def test_parse_idx_rejects_malformed_files(tmp_path, mangle, message):
    raw = write_idx(tmp_path / "x", np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        idx.parse_idx(mangle(raw), "x")


def test_download_verifies_and_caches(tiny_mnist):
    mirror, cache, raw = tiny_mnist
    mnist = download.load_mnist(cache, progress=False)
    assert mnist["train_images"].shape == (12, 28, 28) and mnist["test_labels"].shape == (4,)
    for name, content in raw.items():  # stored decompressed, byte for byte
        assert (cache / name).read_bytes() == content
    for gz in mirror.iterdir():  # the cache is now enough: the mirror is not asked again
        gz.unlink()
    assert download.load_mnist(cache, progress=False)["train_labels"].shape == (12,)


def test_falls_back_to_next_mirror(tiny_mnist, tmp_path, monkeypatch):
    mirror, cache, _ = tiny_mnist
    missing = (tmp_path / "nothing-here").as_uri()
    html = tmp_path / "html"  # a mirror answering with an error page instead of gzip
    html.mkdir()
    for name in download.FILES:
        (html / f"{name}.gz").write_text("<html>403 Forbidden</html>")
    monkeypatch.setenv("LENET5_MNIST_MIRRORS", f"{missing}, {html.as_uri()}/,{mirror.as_uri()}")
    assert download.load_mnist(cache, progress=False)["test_images"].shape == (4, 28, 28)


def test_wrong_content_fails_the_checksum_and_names_every_mirror(tiny_mnist, tmp_path, monkeypatch):
    _, cache, _ = tiny_mnist
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in download.FILES:  # well-formed IDX gzip files, but not the expected ones
        write_idx(wrong / f"{name}.gz", np.ones((3, 28, 28)))
    missing = (tmp_path / "missing").as_uri()
    monkeypatch.setenv("LENET5_MNIST_MIRRORS", f"{wrong.as_uri()},{missing}")
    with pytest.raises(DataError) as error:
        download.load_mnist(cache, progress=False)
    text = str(error.value)
    assert "wrong content (SHA-256" in text and wrong.as_uri() in text and missing in text
    assert "place the four MNIST .gz files" in text
    assert not any((cache / name).exists() for name in download.FILES)


def test_corrupted_cache_file_is_fetched_again(tiny_mnist):
    _, cache, raw = tiny_mnist
    download.load_mnist(cache, progress=False)
    name = "train-images-idx3-ubyte"
    (cache / name).write_bytes(raw[name][:-100])  # truncated by, say, a full disk
    download.load_mnist(cache, progress=False)
    assert (cache / name).read_bytes() == raw[name]


def test_mirror_setting(monkeypatch):
    monkeypatch.delenv("LENET5_MNIST_MIRRORS", raising=False)
    assert download.mirrors() == list(download.DEFAULT_MIRRORS)
    assert "lecun" in download.mirrors()[-1]  # the dead one last
    monkeypatch.setenv("LENET5_MNIST_MIRRORS", " file:///a , http://b/x/ ,")
    assert download.mirrors() == ["file:///a/", "http://b/x/"]


def test_data_dir_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET5_DATA_DIR", str(tmp_path))
    assert download.default_data_dir() == tmp_path
    monkeypatch.delenv("LENET5_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.default_data_dir() == tmp_path / "xdg" / "lenet5" / "mnist"


def test_normalize_layouts():
    images = np.full((2, 28, 28), 255, np.uint8)
    first, last = splits.normalize(images), splits.normalize(images, channels_last=True)
    assert first.shape == (2, 1, 28, 28) and last.shape == (2, 28, 28, 1)
    assert first.dtype == np.float32
    np.testing.assert_allclose(first[0, 0, 0, 0], (1 - splits.MEAN) / splits.STD, rtol=1e-6)


def test_batches_cover_every_image_once_in_a_seeded_order():
    split = splits.Split(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    epoch = [y for _, y in splits.batches(split, 4, seed=(0, 1))]
    assert [len(y) for y in epoch] == [4, 4, 2]
    assert sorted(np.concatenate(epoch)) == list(range(10))
    again = np.concatenate([y for _, y in splits.batches(split, 4, seed=(0, 1))])
    other = np.concatenate([y for _, y in splits.batches(split, 4, seed=(0, 2))])
    np.testing.assert_array_equal(np.concatenate(epoch), again)
    assert not np.array_equal(again, other)
    assert np.concatenate([y for _, y in splits.batches(split, 4)]).tolist() == list(range(10))


def test_real_mnist_splits(mnist_dir):
    loaded = splits.load_splits(val_size=5000, data_dir=mnist_dir, progress=False)
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (55000, 5000, 10000)
    assert np.bincount(loaded.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # The validation images are the same whatever else changes, and not in the training split.
    small = splits.load_splits(val_size=5000, limit_train=100, data_dir=mnist_dir, progress=False)
    np.testing.assert_array_equal(small.val.x, loaded.val.x)
    train_images = {hash(image.tobytes()) for image in loaded.train.x}
    assert sum(hash(image.tobytes()) in train_images for image in loaded.val.x) <= 5
    assert len(small.train) == 100
    none = splits.load_splits(val_size=0, limit_test=50, data_dir=mnist_dir, progress=False)
    assert none.val is None and len(none.train) == 60000 and len(none.test) == 50
