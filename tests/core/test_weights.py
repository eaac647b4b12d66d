"""The neutral weight file (lenet5/network/weights.py), the ONNX export (lenet5/onnx_export.py) and the
converter's command line on .npz files: numpy, onnx and onnxruntime only, so in every environment.
The frameworks' side is in tests/<framework>/test_<framework>_weights.py."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import ROOT, random_params

from lenet5 import onnx_export
from lenet5.config import ACTIVATIONS, POOLINGS
from lenet5.network import reference, weights


@pytest.fixture
def npz(tmp_path):
    return weights.save(tmp_path / "model.npz", random_params(), weights.make_meta("avg", "tanh", framework="mxnet"))


def run(module, *args):
    return subprocess.run(
        [sys.executable, "-m", f"lenet5.{module}", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


def assert_one_line_error(proc, text):
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and text in proc.stderr, proc.stderr
    assert proc.stderr.startswith("python -m lenet5.")


def test_the_layout_is_lenet5s_and_the_flatten_before_f6_is_trivial():
    shapes = weights.shapes()
    assert sum(np.prod(s) for s in shapes.values()) == 61_706
    assert weights.flat_features() == 120 == shapes["f6.weight"][1]  # C5 leaves 120 maps of 1x1
    assert shapes["c3.weight"] == (16, 6, 5, 5) and shapes["output.weight"] == (10, 84)
    assert weights.shapes(26)["output.bias"] == (26,)


def test_save_and_load_round_trip_with_the_architecture_inside(npz, tmp_path):
    params, meta = weights.load(npz)
    for key, value in random_params().items():
        np.testing.assert_array_equal(params[key], value)
        assert params[key].dtype == np.float32
    assert meta == weights.make_meta("avg", "tanh", framework="mxnet") and meta["version"] == weights.VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left
    with np.load(npz) as f:  # plain numpy reads it: no pickles, a JSON string for the options
        assert set(f.files) == set(weights.shapes()) | {"meta"} and f["meta"].dtype.kind == "U"


def corrupt(path, change=None, meta_change=None):
    """Rewrite a valid .npz with one entry changed (None deletes it) or the meta changed."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    for key, value in (change or {}).items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    meta.update(meta_change or {})
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, meta_change, message",
    [
        (
            {"c3.weight": np.zeros((16, 6, 3, 3), np.float32)},
            None,
            "model.npz: c3.weight has shape (16, 6, 3, 3), expected (16, 6, 5, 5) for LeNet-5",
        ),
        (
            {"output.weight": np.zeros((26, 84), np.float32), "output.bias": np.zeros(26, np.float32)},
            None,
            "output.weight has shape (26, 84), expected (10, 84) for LeNet-5 with num_classes 10",
        ),
        ({"f6.bias": None}, None, "not LeNet-5's weights: missing f6.bias"),
        ({"c7.weight": np.zeros(3, np.float32)}, None, "not LeNet-5's weights: unexpected c7.weight"),
        ({"c1.bias": np.zeros(6, np.int64)}, None, "c1.bias holds int64, not floating-point numbers"),
        (None, {"pooling": "median"}, "pooling 'median' is not one of: max, avg"),
        (None, {"num_classes": "ten"}, "num_classes 'ten' is not a positive integer"),
        (None, {"version": 99}, "format version 99 is newer than this code reads"),
    ],
)
def test_a_weight_file_that_does_not_fit_is_refused_in_one_line(npz, change, meta_change, message):
    corrupt(npz, change, meta_change)
    with pytest.raises(weights.WeightsError) as error:
        weights.load(npz)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_not_a_weight_file_at_all(tmp_path, npz):
    (tmp_path / "notes.npz").write_text("not a zip")
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "plain.npz", **random_params())
    for name, message in [
        ("notes.npz", "not an .npz weight file"),
        ("array.npy", "not an .npz weight file"),
        ("plain.npz", "no 'meta' entry"),
        ("missing.npz", "no such file"),
    ]:
        with pytest.raises(weights.WeightsError, match=message):
            weights.load(tmp_path / name)
    with pytest.raises(weights.WeightsError, match="has 10 classes, expected 26"):
        weights.load(npz, num_classes=26)


@pytest.mark.parametrize(
    "arch, pooling, activation",
    [("lenet5", p, a) for p in POOLINGS for a in ACTIVATIONS] + [("lecun98", "max", "relu")],
)
def test_onnx_graph_matches_the_numpy_reference(arch, pooling, activation):
    params, meta = random_params(arch=arch), weights.make_meta(pooling, activation, arch=arch)
    model = onnx_export.build(params, meta)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(1).standard_normal((37, 1, 28, 28)).astype(np.float32)
    session = onnx_export.session(model)
    logits = onnx_export.onnx_logits(session, x, batch_size=8)  # batches of 8, 8, 8, 8 and 5: any N
    np.testing.assert_allclose(logits, reference.forward(params, x, pooling, activation, arch), atol=1e-4)
    np.testing.assert_array_equal(onnx_export.onnx_logits(session, x.transpose(0, 2, 3, 1)), logits)


def test_onnx_export_command_writes_a_file_onnx_opens_and_never_replaces_one(npz, tmp_path):
    proc = run("onnx_export", npz)
    assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stderr
    path = tmp_path / "model.onnx"
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == ["logits"]
    assert {p.key: p.value for p in model.metadata_props}["activation"] == "tanh"
    x = np.zeros((3, 1, 28, 28), np.float32)
    params, meta = weights.load(npz)
    np.testing.assert_allclose(onnx_export.onnx_logits(path, x), reference.forward(params, x, "avg", "tanh"), atol=1e-4)
    before = path.read_bytes()
    assert_one_line_error(run("onnx_export", npz), "model.onnx already exists; nothing was written")
    assert path.read_bytes() == before
    corrupt(npz, {"c5.weight": np.zeros((120, 16, 4, 4), np.float32)})
    assert_one_line_error(run("onnx_export", npz, "-o", tmp_path / "other.onnx"), "c5.weight has shape (120, 16, 4, 4)")
    assert not (tmp_path / "other.onnx").exists()


def test_convert_command_to_npz_and_its_refusals(npz, tmp_path):
    proc = run("convert", npz, "--to", "npz")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "model-npz" / "model.npz"
    assert f"wrote {out}" in proc.stdout
    for key, value in weights.load(npz)[0].items():
        np.testing.assert_array_equal(weights.load(out)[0][key], value)
    before = out.read_bytes()
    assert_one_line_error(run("convert", npz, "--to", "npz"), "already exists; nothing was written")
    assert out.read_bytes() == before
    assert_one_line_error(
        run("convert", npz, "--to", "pytorch", "--output", tmp_path / "x.keras"),
        "not a pytorch file; name one ending in .pt, or a folder",
    )
    assert_one_line_error(run("convert", tmp_path / "nothing", "--to", "mxnet"), "no such run folder or .npz file")
    assert_one_line_error(run("convert", tmp_path, "--to", "mxnet"), "not a run folder (no config.json there)")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"framework": "mxnet", "pooling": "max"}')
    assert_one_line_error(run("convert", tmp_path / "run", "--to", "pytorch"), "the run has no checkpoint yet")
    assert_one_line_error(run("convert", npz, "--to", "caffe"), "invalid choice: 'caffe'")
    assert not (tmp_path / "model-pytorch").exists() and not (tmp_path / "model-mxnet").exists()
