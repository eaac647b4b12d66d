"""MNIST digits drawn as a user's pictures and videos would show them: dark ink on white paper,
at random sizes and places, for the predict tests of every framework."""

import numpy as np
from PIL import Image


def as_picture(digit, rng, colour=False):
    """A 28x28 MNIST digit as dark ink on a white page of random size, scaled and placed at random."""
    size = int(rng.integers(20, 300))
    ink = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    page = Image.new("L", (size + int(rng.integers(0, size)), size + int(rng.integers(0, size))), 255)
    page.paste(ink, (int(rng.integers(0, page.width - size + 1)), int(rng.integers(0, page.height - size + 1))))
    if colour:  # blue ink on cream paper
        grey = np.asarray(page, np.float32)[..., None] / 255
        page = Image.fromarray(np.uint8(grey * [250, 245, 225] + (1 - grey) * [20, 30, 140]))
    return page


def write_pictures(digits, labels, folder, seed=0, suffix=".png"):
    """Each digit as folder/<index>-<label><suffix>; returns the paths in order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        path = folder / f"{i:05d}-{label}{suffix}"
        as_picture(digit, rng, colour=i % 2 == 1).save(path)
        paths.append(path)
    return paths


def write_video(digits, path, fps=5, size=96):
    """One digit per frame, dark on white, as an RGB video (MP4 through imageio-ffmpeg)."""
    import imageio.v3 as iio

    frames = [
        np.asarray(Image.fromarray(255 - d).resize((size, size), Image.Resampling.BICUBIC).convert("RGB"))
        for d in digits
    ]
    iio.imwrite(path, np.stack(frames), fps=fps)
    return path
