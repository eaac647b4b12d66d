"""What the serve tests share: one trained run for the whole session, the app served on a free
loopback port in a thread, and digits as a user draws them (strokes on the 280-pixel canvas).

The test modules import the fixtures from here (a second conftest.py would shadow the one in
tests/, which test modules import as `conftest`)."""

import contextlib
import io
import math
import subprocess
import sys
import threading
import time

import pytest
import uvicorn
from conftest import ROOT
from PIL import Image, ImageDraw

from lenet5 import serve

CANVAS, INK = 280, 18  # the page's canvas and pen (lenet5/serve_static/app.js)


def _ellipse(cx, cy, rx, ry, n=24):
    return [(cx + rx * math.sin(2 * math.pi * i / n), cy - ry * math.cos(2 * math.pi * i / n)) for i in range(n + 1)]


# Digits as strokes of points on the canvas, each stroke drawn without lifting the pen.
DRAWINGS = {
    "7": [[(60, 60), (220, 60), (120, 240)]],
    "1": [[(140, 40), (140, 240)]],
    "0": [_ellipse(140, 140, 70, 100)],
    "4": [[(170, 40), (70, 170), (220, 170)], [(170, 40), (170, 240)]],
}


def drawn_png(strokes):
    """The strokes drawn as the page draws them (black on white, round joins) as PNG bytes."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(image)
    for points in strokes:
        pen.line(points, fill=0, width=INK, joint="curve")
    return png_bytes(image)


def png_bytes(image):
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


_RUNS = {}  # the session's one trained run, whichever module asks first


@pytest.fixture(scope="session")
def trained_run(mnist_dir, tmp_path_factory):
    """A PyTorch run of one epoch on MNIST (about 98% on its test set), as tests/pytorch/test_predict.py makes."""
    if "run" not in _RUNS:
        out = tmp_path_factory.mktemp("serve-runs")
        cmd = [sys.executable, str(ROOT / "train_pytorch" / "train.py"), "--epochs", "1", "--val-size", "0"]
        cmd += ["--limit-test", "1000", "--data-dir", str(mnist_dir), "--output-dir", str(out)]
        subprocess.run([*cmd, "--run-name", "digits", "--no-progress"], check=True, capture_output=True)
        _RUNS["run"] = out / "digits"
    return _RUNS["run"]


@contextlib.contextmanager
def running(model):
    """Serve `model` (a serve.Model) on 127.0.0.1 at a free port, in a thread; yields the base URL."""
    sock = serve.bind("127.0.0.1", 0)
    config = uvicorn.Config(serve.make_app(model), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield serve.url_of(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def url(trained_run):
    """The base URL of the trained run, served for the module's tests."""
    with running(serve.load_model(trained_run)) as base:
        yield base
