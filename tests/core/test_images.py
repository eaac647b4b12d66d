"""The MNIST-like preprocessing of pictures (lenet5/images.py), on small pictures drawn here."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lenet5.images import CENTRE, ImageError, load_image, steps, to_grey, to_mnist


def drawing(size=(120, 90), box=(40, 20, 60, 80), ink=0, paper=255):
    """A grey picture: paper with one filled rectangle of ink (a '1', roughly)."""
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).rectangle(box, fill=ink)
    return np.asarray(image)


def ink_box(digit):
    rows, cols = np.nonzero(digit.any(1))[0], np.nonzero(digit.any(0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(digit):
    ys, xs = np.indices(digit.shape)
    mass = digit.astype(float).sum()
    return (ys * digit).sum() / mass, (xs * digit).sum() / mass


def test_dark_ink_on_light_paper_and_light_ink_on_dark_give_the_same_digit():
    dark_on_light = to_mnist(drawing(ink=20, paper=235))
    light_on_dark = to_mnist(drawing(ink=235, paper=20))
    assert dark_on_light.shape == (28, 28) and dark_on_light.dtype == np.uint8
    np.testing.assert_array_equal(dark_on_light, light_on_dark)
    assert dark_on_light[0, 0] == 0 and dark_on_light.max() == 255  # MNIST: light ink on black


def test_crop_and_scale_into_20x20_keeping_the_aspect_ratio():
    tall = to_mnist(drawing(box=(40, 10, 49, 69)))  # 10 wide, 60 high
    height, width = ink_box(tall)
    assert height == 20 and 3 <= width <= 5
    wide = to_mnist(drawing(size=(300, 200), box=(10, 150, 209, 199)))  # 200 wide, 50 high, off-centre
    height, width = ink_box(wide)
    assert width == 20 and 4 <= height <= 6
    tiny = to_mnist(drawing(size=(12, 12), box=(4, 3, 6, 8)))  # smaller than the box: scaled up
    assert ink_box(tiny)[0] == 20


def test_centre_of_mass_lands_where_mnist_has_it():
    # An L: its centre of mass is far from the middle of its bounding box.
    image = Image.new("L", (100, 100), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 20, 90), fill=0)
    draw.rectangle((10, 80, 60, 90), fill=0)
    digit = to_mnist(np.asarray(image))
    cy, cx = centre_of_mass(digit)
    assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5
    assert ink_box(digit)[0] == 20


def test_paper_noise_is_not_ink():
    rng = np.random.default_rng(0)
    noisy = np.clip(drawing(ink=30, paper=220).astype(int) + rng.integers(-15, 16, (90, 120)), 0, 255)
    clean, from_noisy = to_mnist(drawing(ink=30, paper=220)), to_mnist(noisy.astype(np.uint8))
    assert ink_box(from_noisy) == ink_box(clean)  # the noise was not taken for ink: same crop
    assert np.abs(from_noisy.astype(int) - clean).mean() < 5


@pytest.mark.parametrize(
    "picture, message",
    [
        (np.full((40, 30), 255, np.uint8), "no digit found"),
        (np.full((40, 30), 3, np.uint8), "no digit found"),
        (np.zeros((0, 10), np.uint8), "empty image"),
    ],
)
def test_a_blank_or_empty_picture_is_refused(picture, message):
    with pytest.raises(ImageError, match=message):
        to_mnist(picture)


def test_steps_show_each_stage():
    shown = steps(drawing())
    assert set(shown) == {"grey", "ink", "cropped", "scaled", "mnist"}
    assert shown["cropped"].shape == (61, 21) and max(shown["scaled"].shape) == 20


def test_colour_and_transparent_files_are_read_as_grey(tmp_path):
    rgb = Image.new("RGB", (60, 60), (250, 250, 240))
    ImageDraw.Draw(rgb).rectangle((25, 10, 35, 50), fill=(20, 30, 120))  # blue ink on cream paper
    rgb.save(tmp_path / "blue.jpg")
    rgba = Image.new("RGBA", (60, 60), (0, 0, 0, 0))  # transparent background: white paper
    ImageDraw.Draw(rgba).rectangle((25, 10, 35, 50), fill=(0, 0, 0, 255))
    rgba.save(tmp_path / "clear.png")
    blue, clear = to_mnist(load_image(tmp_path / "blue.jpg")), to_mnist(load_image(tmp_path / "clear.png"))
    assert ink_box(blue) == ink_box(clear) and ink_box(blue)[0] == 20
    assert to_grey(np.asarray(rgb)).shape == (60, 60)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"not a picture at all", "not an image"),
    ],
)
def test_unreadable_files_say_why(tmp_path, content, message):
    path = tmp_path / "digit.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)
