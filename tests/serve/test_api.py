"""python -m lenet5.serve's JSON API, against a real server on a loopback port: drawn digits and
MNIST digits as pictures, compared with the numpy reference and with predict; twenty requests at
once; bad pictures; .onnx files and runs of a framework this environment lacks."""

import concurrent.futures
import io
import shutil
import subprocess
import threading

import httpx
import numpy as np
import pytest
from conftest import ROOT
from digit_pictures import as_picture
from PIL import Image
from serving import DRAWINGS, drawn_png, png_bytes, running, trained_run, url  # noqa: F401 - fixtures

from lenet5 import convert, envs, models, onnx_export, serve
from lenet5.data import images
from lenet5.data.download import load_mnist
from lenet5.data.splits import normalize
from lenet5.network import reference, weights
from lenet5.training.runfolder import RunFolder

LAYERS = {"c1": [6, 28, 28], "s2": [6, 14, 14], "c3": [16, 10, 10], "s4": [16, 5, 5], "c5": [120], "f6": [84]}


def post(base, data, **kwargs):
    return httpx.post(base + "api/predict", content=data, timeout=60, **kwargs)


def test_a_drawn_digit_gets_its_probabilities_preprocessing_and_every_layer(url, trained_run):  # noqa: F811
    picture = drawn_png(DRAWINGS["7"])
    response = post(url, picture, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["prediction"] == "7" and answer["classes"] == [str(d) for d in range(10)]
    # The 28x28 image is predict's preprocessing of the same picture, and the numbers are the
    # numpy reference's on the neutral weights.
    digit = np.array(answer["image"], np.uint8)
    assert np.array_equal(digit, images.to_mnist(images.load_image(io.BytesIO(picture))))
    params, meta = weights.load(trained_run / weights.FILENAME)
    x = normalize(digit[None])
    expected = dict(reference.trace(params, x, meta["pooling"], meta["activation"]))
    np.testing.assert_allclose(answer["probabilities"], reference.softmax(expected["output"])[0], atol=1e-6)
    assert [layer["name"] for layer in answer["layers"]] == [*LAYERS, "output"]
    for layer in answer["layers"]:
        assert layer["shape"] == LAYERS.get(layer["name"], [10])
        np.testing.assert_allclose(layer["values"], expected[layer["name"]][0].reshape(layer["shape"]), atol=1e-4)
    steps = answer["steps"]
    assert all(steps[k].startswith("data:image/png;base64,") for k in ("ink", "cropped", "scaled", "mnist"))
    assert max(steps["scaled_size"]) == images.BOX
    np.testing.assert_allclose(steps["centre_of_mass"], images.CENTRE, atol=0.5)


def test_twenty_requests_at_once_are_all_answered_as_predict_answers_them(url, trained_run, mnist_dir, tmp_path):  # noqa: F811
    mnist = load_mnist(mnist_dir, progress=False)
    rng = np.random.default_rng(0)
    n = 20
    paths = []
    for i in range(n):  # MNIST test digits as users' pictures: dark on white, of any size, in colour
        paths.append(tmp_path / f"{i}.png")
        as_picture(mnist["test_images"][i], rng, colour=i % 2 == 1).save(paths[-1])
    start = threading.Barrier(n)

    def ask(path):
        with httpx.Client(timeout=120) as client:
            start.wait()  # all twenty sent together
            return client.post(url + "api/predict", files={"image": (path.name, path.read_bytes(), "image/png")})

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(ask, paths))
    assert [r.status_code for r in responses] == [200] * n
    served = np.array([r.json()["probabilities"] for r in responses])
    # predict's loader, with the run's own PyTorch model, gives the same probabilities to the same pictures.
    digits = np.stack([images.to_mnist(images.load_image(p)) for p in paths])
    own = reference.softmax(np.asarray(models.open_model(trained_run).logits(normalize(digits), 256), np.float64))
    np.testing.assert_allclose(served, own, atol=1e-4)
    assert np.mean(served.argmax(1) == mnist["test_labels"][:n]) >= 0.9


def test_bad_pictures_get_a_4xx_and_a_message_and_the_server_keeps_serving(url):  # noqa: F811
    blank = png_bytes(Image.new("L", (280, 280), 255))  # the empty canvas
    huge = png_bytes(Image.new("L", (5000, 4000), 255))  # 20 million pixels in a small file
    good = drawn_png(DRAWINGS["1"])
    cases = [
        (b"", 400, "empty request"),
        (b"not a picture at all", 400, "not an image"),
        (good[: len(good) // 2], 400, "unreadable image"),
        (blank, 422, "no digit found"),
        (huge, 413, "too large"),
        (b"\0" * (serve.MAX_BYTES + 1), 413, "too large"),
        (iter([b"\0" * 2**20] * (serve.MAX_BYTES // 2**20 + 1)), 413, "too large"),  # chunked: no length said
    ]
    for data, status, message in cases:
        response = post(url, data)
        assert response.status_code == status and message in response.json()["error"], (message, response.text)
    forms = [
        (_form(b'Content-Disposition: form-data; name="note"\r\n\r\nno file'), "a form without a file"),
        ({"files": {"a": ("a.png", good), "b": ("b.png", good)}}, "nor a form holding one"),
        ({"content": b"--b\r\n", "headers": {"Content-Type": "multipart/form-data"}}, "nor a form holding one"),
    ]
    for form, message in forms:
        response = httpx.post(url + "api/predict", timeout=60, **form)
        assert response.status_code == 400 and message in response.json()["error"], (message, response.text)
    assert httpx.get(url + "api/predict").status_code == 405
    response = post(url, good)
    assert response.status_code == 200 and response.json()["prediction"] == "1"


def _form(part):
    """A multipart form of one part, as httpx's keyword arguments."""
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    return {"content": b"--b\r\n" + part + b"\r\n--b--\r\n", "headers": headers}


def test_the_page_and_its_files_come_from_the_server_alone(url):  # noqa: F811
    page = httpx.get(url).text
    for name in ("static/app.js", "static/style.css"):
        assert f'"{name}"' in page
        response = httpx.get(url + name)
        assert response.status_code == 200 and "http://" not in response.text and "https://" not in response.text
    assert "http://" not in page and "https://" not in page
    info = httpx.get(url + "api/model").json()
    assert info["layers"] and info["classes"] == [str(d) for d in range(10)] and "pytorch" in info["what"]


def test_an_onnx_file_is_run_by_onnxruntime_with_the_layers_from_model_npz_beside_it(trained_run, tmp_path):  # noqa: F811
    picture = drawn_png(DRAWINGS["0"])
    neutral = serve.analyse(serve.load_model(trained_run), picture)
    alone = tmp_path / "alone" / "lenet5.onnx"
    assert onnx_export.main([str(trained_run), "--output", str(alone)]) == 0
    answer = serve.analyse(serve.load_model(alone), picture)
    np.testing.assert_allclose(answer["probabilities"], neutral["probabilities"], atol=1e-5)
    assert answer["layers"] is None and "model.npz" in answer["note"]
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(alone, beside / "model.onnx")
    shutil.copy(trained_run / weights.FILENAME, beside / weights.FILENAME)
    answer = serve.analyse(serve.load_model(beside / "model.onnx"), picture)
    assert answer["note"] is None and answer["prediction"] == "0"
    assert [layer["name"] for layer in answer["layers"]] == [layer["name"] for layer in neutral["layers"]]


def test_a_model_npz_alone_is_served_with_the_digits_as_its_classes(trained_run, tmp_path):  # noqa: F811
    picture = drawn_png(DRAWINGS["7"])
    shutil.copy(trained_run / weights.FILENAME, tmp_path / "lenet5.npz")
    model = serve.load_model(tmp_path / "lenet5.npz")
    assert model.classes == [str(d) for d in range(10)] and "pytorch" in model.what
    answer, own = serve.analyse(model, picture), serve.analyse(serve.load_model(trained_run), picture)
    assert answer["probabilities"] == own["probabilities"] and answer["prediction"] == "7"


@pytest.fixture(scope="module")
def mxnet_run(mnist_dir, tmp_path_factory):
    """A real MXNet run of one short epoch, trained in MXNet's environment."""
    out = tmp_path_factory.mktemp("mxnet-runs")
    cmd = [str(envs.env_python("mxnet")), str(ROOT / "train_mxnet" / "train.py"), "--epochs", "1", "--val-size", "0"]
    cmd += ["--limit-train", "8192", "--limit-test", "500", "--data-dir", str(mnist_dir), "--output-dir", str(out)]
    subprocess.run([*cmd, "--run-name", "mx", "--no-progress"], check=True, capture_output=True)
    return out / "mx"


def test_a_run_of_a_framework_this_environment_lacks_is_served_from_its_neutral_weights(mxnet_run):
    assert not envs.has_framework("mxnet")  # the PyTorch environment, where the serve tests run
    model = serve.load_model(mxnet_run)
    assert model.what.startswith("mx (mxnet, max pooling, relu; test accuracy ")
    picture = drawn_png(DRAWINGS["4"])
    with running(model) as base:
        answer = post(base, picture).json()
    # MXNet's own model, opened in its environment, on the 28x28 image the page was given
    run = RunFolder(mxnet_run)
    x = normalize(np.asarray(answer["image"], np.uint8)[None])
    own = convert.native_logits("mxnet", run.final_model("mxnet"), weights.meta_of(run.config(), 10), x)
    assert answer["probabilities"] == pytest.approx(reference.softmax(own.astype(np.float64))[0], abs=1e-5)
    assert len(answer["layers"]) == 7


def test_a_lecun98_model_shows_the_papers_layers_and_its_class_is_the_nearest_bitmap(tmp_path):
    from conftest import random_params

    params, meta = random_params(arch="lecun98"), weights.make_meta("max", "relu", arch="lecun98")
    weights.save(tmp_path / "lecun98.npz", params, meta)
    answer = serve.analyse(serve.load_model(tmp_path / "lecun98.npz"), drawn_png(DRAWINGS["7"]))
    shapes = {layer["name"]: layer["shape"] for layer in answer["layers"]}
    assert shapes == {"c1": [6, 28, 28], "s2": [6, 14, 14], "c3": [16, 10, 10], "s4": [16, 5, 5]} | {
        "c5": [120],
        "f6": [84],
        "output": [10],
    }
    f6 = next(layer["values"] for layer in answer["layers"] if layer["name"] == "f6")
    rbf = ((np.asarray(f6)[None] - params["output.weight"]) ** 2).sum(axis=1)  # the paper's RBF outputs
    assert answer["prediction"] == str(int(rbf.argmin()))
