"""The MNIST-like preprocessing of pictures (lenet5/data/images.py), on small pictures drawn here."""

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import peak_memory
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from lenet5.data import images
from lenet5.data.images import CENTRE, ImageError, load_image, steps, to_grey, to_mnist


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


# Which modes each format writes (Pillow refuses the rest), and the modes a picture may come in.
FORMATS = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
    "WEBP": ("RGB", "RGBA"),
    "PPM": ("1", "L", "RGB", "I;16"),
    "GIF": ("L", "P"),
}


@st.composite
def picture_files(draw):
    """The bytes of a picture file: any size, mode, bit depth and format Pillow writes, its pixels
    random or a dark stroke on light paper, and perhaps cut short or with bytes overwritten."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    else:
        image = Image.new("RGB", (width, height), "white")
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        ImageDraw.Draw(image).line((x0, y0, rng.integers(x0, width), rng.integers(y0, height)), "black", 3)
    image = image.convert(mode) if mode not in ("I;16", "F") else image.convert("I").convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    raw = bytearray(out.getvalue())
    damage = draw(st.sampled_from(["none", "cut", "overwrite"]))
    if damage == "cut":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif damage == "overwrite":
        for _ in range(draw(st.integers(1, 8))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return fmt, mode, bytes(raw)


@settings(max_examples=300, deadline=None)
@given(picture_files())
def test_any_picture_file_gives_a_28x28_digit_or_one_line_saying_why(picture):
    fmt, mode, raw = picture
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"picture.{fmt.lower()}"
        path.write_bytes(raw)
        try:
            digit = images.to_mnist(images.load_image(path))
        except images.ImageError as error:
            assert str(error) and "\n" not in str(error), (fmt, mode, str(error))
        else:
            assert digit.shape == (28, 28) and digit.dtype == np.uint8


def test_a_decompression_bomb_is_refused_before_decoding_and_a_large_photo_is_scaled_down(tmp_path):
    bomb = tmp_path / "bomb.png"  # 144 million pixels in a 20 kB file: 2 GB once decoded, before
    Image.new("1", (12_000, 12_000)).save(bomb)
    memory, output = peak_memory(
        "-c",
        f"from lenet5.data import images\ntry:\n    images.load_image({str(bomb)!r})\n"
        "except images.ImageError as error:\n    print(error)",
    )
    assert output.startswith("too large: more than 64 million pixels"), output
    assert memory < 250e6, memory
    photo = tmp_path / "photo.png"  # 7,000 x 7,000: allowed, read at 2048 x 2048
    image = Image.new("L", (7_000, 7_000), 255)
    ImageDraw.Draw(image).line((3_500, 1_000, 3_500, 6_000), 0, 400)
    image.save(photo)
    del image
    memory, output = peak_memory(
        "-c",
        f"from lenet5.data import images\ngrey = images.load_image({str(photo)!r})\n"
        "print(grey.shape, images.to_mnist(grey).max())",
    )
    assert output.strip() == "(2048, 2048) 255", output
    assert memory < 400e6, memory
