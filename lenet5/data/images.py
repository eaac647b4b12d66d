"""Any picture of a digit -> a 28x28 MNIST-like image, the way MNIST itself was made.

MNIST's digits are light ink on black, cropped to the ink, scaled into a 20x20 box keeping
their aspect ratio, and pasted into 28x28 so that their centre of mass sits at the centre.
A photo or a scan is none of that, and LeNet-5 sees only what it was trained on; so predict
and the image-folder datasets both send every picture through `to_mnist` first.

    from lenet5.data.images import load_image, to_mnist
    digit = to_mnist(load_image("photo.jpg"))   # (28, 28) uint8
"""

import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..files import first_line

SIZE, BOX = 28, 20  # MNIST's canvas and the box the digit is scaled into
CENTRE = 14.0  # where MNIST's centres of mass lie, in pixel indices (mean 14.0, std 0.3)
INK = 0.2  # a pixel is ink when it stands out from the background by 20% of the full contrast
MIN_CONTRAST = 32  # below this (of 255), there is nothing on the image to read: a blank page
MAX_PIXELS = 64_000_000  # larger pictures are refused before decoding: a 64-megapixel photo decodes in ~200 MB
MAX_SIDE = 2048  # pictures are scaled down to this before the work on floats, which needs 4 bytes a pixel
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class ImageError(Exception):
    """The picture cannot be read, or holds no digit; the message says which."""


def check_size(width, height):
    """Refuse a picture too large to decode safely (before decoding it): a decompression bomb
    is a small file of a huge image."""
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"too large: more than {MAX_PIXELS // 1_000_000} million pixels ({width} x {height}); scale it down first"
        )


def load_image(path):
    """A picture file (any size, colour or grey) as a 2-D uint8 grey array, at most MAX_SIDE
    pixels on its longer side (the digit ends up 20 pixels tall: no detail is lost)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on damaged files: the outcome says enough
            # Pillow only warns below twice its own limit; ours is lower, and checked before decoding.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_size(*image.size)
                image.draft(image.mode, (MAX_SIDE, MAX_SIDE))  # a large JPEG decodes at 1/2, 1/4 or 1/8 scale
                image = ImageOps.exif_transpose(image)  # phone photos are stored sideways
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    # Transparent pixels have no colour of their own: put them on white paper.
                    image = image.convert("RGBA")
                    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
                grey = Image.fromarray(to_grey(image))
        grey.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(grey)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (or an unreadable one)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):  # Pillow's check, at opening
        raise ImageError(
            f"too large: more than {MAX_PIXELS // 1_000_000} million pixels; scale it down first"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or damaged: Pillow's plugins differ
        raise ImageError(f"unreadable image ({first_line(error)})") from None


def to_grey(image):
    """A Pillow image of any mode, or an (H, W) or (H, W, 3|4) array as imageio reads video
    frames, as a uint8 grey image (16-bit and float pictures scaled down to 8 bits)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 3:
            image = image[..., :3]
        image = Image.fromarray(_to_uint8(image))
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _to_uint8(np.asarray(image))
    return np.asarray(image.convert("L"))


def _to_uint8(array):
    """8-bit as it is; 16-bit by its top byte; 32-bit integer and float pictures by their range."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if array.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        return (array >> 8).astype(np.uint8)
    array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    return np.round((array - low) * (255.0 / (high - low) if high > low else 0.0)).astype(np.uint8)


def steps(grey):
    """Every stage of `to_mnist`, for showing: dict of arrays 'grey', 'ink' (inverted if the
    background was light, background removed), 'cropped', 'scaled' and 'mnist' (28x28 uint8)."""
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.size == 0:
        raise ImageError("empty image" if grey.size == 0 else f"expected a grey image, got shape {grey.shape}")
    x = grey.astype(np.float32)
    # The background is what the border mostly shows: digits are written in the middle.
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    background = float(np.median(border))
    if background > 127:  # dark ink on light paper: MNIST is light ink on black
        x, background = 255.0 - x, 255.0 - background
    x = np.clip(x - background, 0, None)
    contrast = float(x.max())
    if contrast < MIN_CONTRAST:
        raise ImageError("no digit found (a blank image: nothing stands out from the background)")
    x = np.where(x >= INK * contrast, x, 0) * (255.0 / contrast)  # paper noise out, full range in
    rows, cols = np.nonzero(x.any(1))[0], np.nonzero(x.any(0))[0]
    cropped = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    h, w = cropped.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    scaled = np.asarray(Image.fromarray(cropped).resize(size, Image.Resampling.LANCZOS))
    scaled = np.clip(scaled, 0, 255)

    # Paste so that the centre of mass lands on MNIST's: shift by whole pixels, as MNIST did.
    ys, xs = np.indices(scaled.shape)
    mass = scaled.sum()
    top = int(np.clip(round(CENTRE - (ys * scaled).sum() / mass), 0, SIZE - scaled.shape[0]))
    left = int(np.clip(round(CENTRE - (xs * scaled).sum() / mass), 0, SIZE - scaled.shape[1]))
    mnist = np.zeros((SIZE, SIZE), np.float32)
    mnist[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
    return {
        "grey": grey.astype(np.uint8),
        "ink": _uint8(x),
        "cropped": _uint8(cropped),
        "scaled": _uint8(scaled),
        "mnist": _uint8(mnist),
    }


def _uint8(image):
    return np.round(image).astype(np.uint8)


def to_mnist(grey):
    """A grey picture of one digit as a 28x28 uint8 MNIST-like image (light ink on black)."""
    return steps(grey)["mnist"]
