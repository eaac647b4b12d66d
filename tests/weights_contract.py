"""One model, three frameworks, provably: the neutral weights (model.npz), the converters and ONNX.

Each tests/<framework>/test_<framework>_weights.py sets FRAMEWORK and does
`from weights_contract import *`, so every framework runs the very same checks as the source of
a conversion. The parity test trains every pooling x activation here, converts each run to the
other two frameworks, which write and then run the converted files in their own environments
(lenet5.envs.call, through lenet5.convert), and compares the logits on the whole real MNIST test
set; the three environments together cover all six directions.
"""

import importlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, random_params, read_json

from lenet5 import envs
from lenet5.config import ACTIVATIONS, FRAMEWORKS, POOLINGS
from lenet5.convert import FILES, convert, native_logits
from lenet5.data.splits import load_splits
from lenet5.envs import env_python
from lenet5.network import reference, weights
from lenet5.onnx_export import export, onnx_logits
from lenet5.training.runfolder import RunFolder

# Today's LeNet-5 in every pooling x activation, and the 1998 paper's, which has its own.
COMBOS = [("lenet5", pooling, activation) for pooling in POOLINGS for activation in ACTIVATIONS]
COMBOS += [("lecun98", "max", "relu")]
# A short real training: 256 Adam steps of 16 images, enough to move every layer far from its
# initialisation (71-96% test accuracy measured), cheap enough for 8 runs per framework.
PARITY_TRAIN = ["--epochs", "1", "--limit-train", "4096", "--batch-size", "16", "--val-size", "0"]
ATOL = 1e-4  # float32 kernels differ in summation order; 1e-4 is far below any logit gap that matters


@pytest.fixture(scope="module")
def framework(request):
    return request.module.FRAMEWORK


@pytest.fixture(scope="module")
def native(framework):
    return importlib.import_module(f"model_{framework}.convert")


def others(framework):
    """The other two frameworks, whose environments the conversions use (make envs builds them)."""
    missing = [f"{f} ({env_python(f)})" for f in FRAMEWORKS if f != framework and not env_python(f).exists()]
    if missing:
        pytest.fail(f"converting needs the other frameworks' environments; missing: {', '.join(missing)}")
    return [f for f in FRAMEWORKS if f != framework]


def assert_same_params(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("arch, pooling, activation", COMBOS)
def test_neutral_weights_round_trip_through_the_native_files(native, tmp_path, arch, pooling, activation):
    params, meta = random_params(arch=arch), weights.make_meta(pooling, activation, arch=arch)
    assert_same_params(native.to_neutral(native.from_neutral(params, meta)), params)
    stem = tmp_path / "model"
    paths = native.write_native(params, meta, stem)
    assert all(path.exists() for path in paths) and paths[0].name == f"model{native.SUFFIX}"
    assert_same_params(native.read_native(paths[0]), params)
    x = np.random.default_rng(1).standard_normal((16, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(
        native.native_logits(paths[0], meta, x, batch_size=5),
        reference.forward(params, x, pooling, activation, arch),
        atol=ATOL,
    )


def test_weights_of_the_wrong_shape_are_refused_naming_the_layer(native):
    params, meta = random_params(), weights.make_meta("max", "relu")
    params["c3.weight"] = params["c3.weight"][:, :, :3, :3]
    with pytest.raises(weights.WeightsError, match=r"c3.weight has shape \(16, 6, 3, 3\), expected \(16, 6, 5, 5\)"):
        native.from_neutral(params, meta)
    with pytest.raises(weights.WeightsError, match=r"output.weight has shape \(26, 84\), expected \(10, 84\)"):
        native.from_neutral(random_params(26), meta)


def test_convert_an_interrupted_run_takes_its_last_checkpoint(interrupted_run, framework, native, tmp_path, mnist_dir):
    run_dir = interrupted_run(framework, "--epochs", "3", "--limit-train", "4096", "--val-size", "512")
    checkpoint = read_json(run_dir / "checkpoint.json")
    expected = native.read_native(run_dir / checkpoint["files"][0])

    def command(*args):
        return subprocess.run(
            [sys.executable, "-m", "lenet5.convert", str(run_dir), *args], cwd=ROOT, capture_output=True, text=True
        )

    proc = command("--to", "npz", "--output", str(tmp_path / "checkpoint.npz"))
    assert proc.returncode == 0 and f"checkpoint after epoch {checkpoint['epoch']}" in proc.stdout, proc.stderr
    params, meta = weights.load(tmp_path / "checkpoint.npz")
    assert_same_params(params, expected)
    assert meta["framework"] == framework and meta["pooling"] == "max"
    test = load_splits(0, limit_test=500, data_dir=mnist_dir, progress=False).test
    assert (reference.forward(params, test.x).argmax(1) == test.y).mean() > 0.5  # trained weights, not init

    target = others(framework)[0]  # written in that framework's own environment
    proc = command("--to", target)
    assert proc.returncode == 0, proc.stderr
    out = run_dir / f"converted-{target}"
    assert (out / f"model{FILES[target][0]}").exists()
    assert_same_params(weights.load(out / weights.FILENAME)[0], expected)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = command("--to", target)  # again: refused, nothing touched
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "already exists" in proc.stderr, proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.fixture(scope="module")
def parity(framework, native, mnist_dir, tmp_path_factory):
    """Train every pooling x activation here; keep this framework's logits (from its own files)
    and the ONNX export's; convert each run to the other two frameworks (both at once, one process
    of each's environment for all the runs), and keep the logits of the converted files, run by
    their framework there."""
    train = importlib.import_module(f"train_{framework}.train")
    out = tmp_path_factory.mktemp(f"parity-{framework}")
    test = load_splits(0, data_dir=mnist_dir, progress=False).test
    runs = {}
    for arch, pooling, activation in COMBOS:
        run_dir = out / f"{arch}-{pooling}-{activation}"
        assert (
            train.main(
                [
                    "--data-dir",
                    str(mnist_dir),
                    "--output-dir",
                    str(out),
                    "--run-name",
                    run_dir.name,
                    "--arch",
                    arch,
                    "--pooling",
                    pooling,
                    "--activation",
                    activation,
                    "--no-progress",
                    *PARITY_TRAIN,
                ]
            )
            == 0
        )
        params, meta = weights.load(run_dir / weights.FILENAME)
        final = RunFolder(run_dir).final_model(framework)
        runs[arch, pooling, activation] = dict(
            dir=run_dir,
            params=params,
            meta=meta,
            native_params=native.read_native(final),
            logits=native.native_logits(final, meta, test.x),
            onnx=onnx_logits(export(run_dir)[0], test.x),
            accuracy=read_json(run_dir / "result.json")["test_accuracy"],
        )

    np.save(out / "images.npy", test.x)

    def converted_logits(target):  # one process of the target's environment for all the runs
        envs.call(target, "weights_contract:converted_logits_step", target, [run["dir"] for run in runs.values()], out)
        return {key: np.load(run["dir"] / f"converted-{target}" / "logits.npy") for key, run in runs.items()}

    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(2) as pool:
        patch.setenv("PYTHONPATH", str(ROOT / "tests"))  # where the other environments find this module
        converted = dict(zip(others(framework), pool.map(converted_logits, others(framework))))
    return dict(runs=runs, test=test, converted=converted)


def converted_logits_step(target, run_dirs, out):
    """In `target`'s environment (lenet5.envs.call): each run converted as `python -m lenet5.convert
    RUN --to TARGET --output RUN/converted-TARGET` does, then the written file's logits, run by the
    target framework, on the images in `out`/images.npy, into converted-TARGET/logits.npy."""
    images = np.load(Path(out) / "images.npy")
    for run_dir in map(Path, run_dirs):
        written, _ = convert(run_dir, target, run_dir / f"converted-{target}")
        meta = weights.load(run_dir / weights.FILENAME)[1]
        np.save(written[0].parent / "logits.npy", native_logits(target, written[0], meta, images))


@pytest.mark.parametrize("arch, pooling, activation", COMBOS)
def test_parity_converted_to_the_other_frameworks_same_logits_on_the_whole_test_set(
    parity, framework, arch, pooling, activation
):
    run, test = parity["runs"][arch, pooling, activation], parity["test"]
    ours = run["logits"]
    assert ours.shape == (10_000, 10)
    # The weights are trained ones, and the neutral file holds exactly the framework's own.
    assert 0.5 < (ours.argmax(1) == test.y).mean() == pytest.approx(run["accuracy"])
    assert_same_params(run["params"], run["native_params"])
    # The independent yardstick: plain numpy in float64, on the first 500 images.
    np.testing.assert_allclose(
        ours[:500], reference.forward(run["params"], test.x[:500], pooling, activation, arch), atol=ATOL
    )
    for name, theirs in [("onnxruntime", run["onnx"])] + [
        (target, parity["converted"][target][arch, pooling, activation]) for target in others(framework)
    ]:
        diff = float(np.abs(theirs - ours).max())
        print(
            f"{framework} -> {name}, {arch} {pooling}/{activation}: max |logit diff| {diff:.2e}, "
            f"same class for {(theirs.argmax(1) == ours.argmax(1)).sum()}/10000"
        )
        assert theirs.shape == ours.shape and diff <= ATOL, f"{framework} -> {name}: {diff}"
        assert (theirs.argmax(1) == ours.argmax(1)).all(), f"{framework} -> {name}: classes differ"
