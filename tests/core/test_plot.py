"""What a run writes for plots (test predictions, TensorBoard events) and python -m lenet5.plot,
on tiny run folders made with lenet5.training.run itself."""

import json

import numpy as np
import pytest
from conftest import read_events, read_scalars
from PIL import Image

from lenet5 import plot
from lenet5.config import Config
from lenet5.network import lecun98, reference, sdlm, weights
from lenet5.training.run import Run
from lenet5.training.runfolder import PREDICTIONS, RunError, RunFolder

EPOCHS = [
    dict(epoch=1, train_loss=0.9, train_acc=0.7, val_loss=0.5, val_acc=0.8, lr=0.004, seconds=2.0),
    dict(epoch=2, train_loss=0.3, train_acc=0.9, val_loss=0.25, val_acc=0.92, lr=0.001, seconds=1.5),
]


def make_run(tmp_path, data_dir="", tensorboard=False, name="run", epochs=EPOCHS, logits=None, labels=None):
    """A finished run folder as train.py leaves it, without the framework's files (model.npz: random
    weights, with the predictions)."""
    cfg = Config(
        output_dir=str(tmp_path / "runs"),
        run_name=name,
        data_dir=str(data_dir),
        val_size=2,  # of the tiny MNIST's 12 training images
        epochs=len(epochs),
        no_progress=True,
        tensorboard=tensorboard,
    )
    run = Run(cfg)
    run.start()
    for row in epochs:
        run.log_epoch(**row)
    if logits is not None:  # else as a run stopped before its test predictions
        run.save_predictions(labels, logits)
        rng = np.random.default_rng(0)
        run.save_weights({k: rng.normal(0, 0.1, shape).astype(np.float32) for k, shape in weights.shapes().items()})
    run.finish(0.4, 0.75, 61_706, "0", "cpu")
    return run.dir


def test_predictions_file_has_every_test_image_in_order(tmp_path):
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1000.0, 0.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    run_dir = make_run(tmp_path, logits=logits, labels=[0, 2, 1, 1])
    with np.load(run_dir / PREDICTIONS) as saved:
        np.testing.assert_array_equal(saved["label"], [0, 2, 1, 1])
        np.testing.assert_array_equal(saved["prediction"], [0, 2, 0, 1])
        np.testing.assert_array_equal(saved["logits"], logits)
        np.testing.assert_allclose(saved["probability"].sum(axis=1), 1, rtol=1e-6)
        assert saved["probability"][2, 0] == 1.0  # no overflow from large logits
        np.testing.assert_allclose(saved["probability"][0], np.exp([2, 1, 0]) / np.exp([2, 1, 0]).sum(), rtol=1e-6)


def test_tensorboard_events_hold_every_epoch_and_a_resume_purges_the_redone_ones(tmp_path, capsys):
    # A run checkpointed at the end of epoch 1, then stopped after logging epoch 2 (before its checkpoint).
    cfg = Config(output_dir=str(tmp_path), run_name="run", epochs=2, no_progress=True, tensorboard=True)
    run = Run(cfg)
    run.start()
    run.log_epoch(**EPOCHS[0])
    run.save_checkpoint(1, 10, lambda stem: [stem.touch() or stem.name])
    run.log_epoch(**EPOCHS[1])
    with pytest.raises(RunError), run.stopping():  # stopped: the queued events are written
        raise RunError("the training loss became nan")
    scalars = read_scalars(run.dir / "tensorboard")
    assert {tag for _, tag, _ in scalars} == {
        "loss/train",
        "accuracy/train",
        "loss/val",
        "accuracy/val",
        "lr",
        "seconds",
    }
    assert (1, "accuracy/val", pytest.approx(0.8)) in scalars and (2, "lr", pytest.approx(0.001)) in scalars

    run = Run(Config(**dict(cfg.to_dict(), resume=str(run.dir))))
    assert run.resume()[0] == 1
    run.start()
    run.log_epoch(**dict(EPOCHS[1], val_acc=0.95))
    run.finish(0.3, 0.93, 61_706, "0", "cpu")
    newest = sorted((run.dir / "tensorboard").glob("events.out.tfevents.*"))[-1]
    assert (2, "accuracy/val", pytest.approx(0.95)) in read_scalars(newest.parent)
    assert (2, "test/accuracy", pytest.approx(0.93)) in read_scalars(newest.parent)
    # tensorboardX's purge marker, a session start at step 2: TensorBoard hides the first epoch 2.
    assert [(e.step, e.session_log.status) for e in read_events(newest) if e.HasField("session_log")] == [(2, 1)]


def test_no_validation_split_gives_no_val_scalars(tmp_path):
    nan = float("nan")
    run_dir = make_run(tmp_path, tensorboard=True, epochs=[dict(EPOCHS[0], val_loss=nan, val_acc=nan)])
    assert {tag for _, tag, _ in read_scalars(run_dir / "tensorboard")} == {
        "loss/train",
        "accuracy/train",
        "lr",
        "seconds",
        "test/loss",
        "test/accuracy",
    }


@pytest.fixture
def run_with_predictions(tmp_path, tiny_mnist):
    """A run on the tiny MNIST (4 test images), with predictions: two right, two wrong."""
    _, cache, _ = tiny_mnist
    labels = plot.load_images(Config(data_dir=str(cache)), "test")[1]
    logits = np.eye(10, dtype=np.float32)[[labels[0], labels[1], (labels[2] + 1) % 10, (labels[3] + 1) % 10]] * 4
    return make_run(tmp_path, data_dir=cache, logits=logits, labels=labels)


def test_plot_writes_every_png_and_replaces_only_its_own(run_with_predictions, capsys):
    run_dir = run_with_predictions
    assert plot.main([str(run_dir)]) == 0
    names = {f"{what}.png" for what in plot.PLOTS}
    assert {p.name for p in (run_dir / "plots").iterdir()} == names
    for name in names:
        with Image.open(run_dir / "plots" / name) as image:
            assert image.format == "PNG" and image.width > 300 and image.text["Software"] == plot.MAKER
    assert plot.main([str(run_dir), "--what", "curves"]) == 0  # its own plot: replaced
    capsys.readouterr()

    mine = run_dir / "plots" / "confusion.png"
    Image.new("RGB", (8, 8)).save(mine)  # a user's file under the same name
    before = mine.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        plot.main([str(run_dir)])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "was not made by lenet5.plot" in err and err.count("\n") == 1, err
    assert mine.read_bytes() == before

    other = run_dir.parent / "elsewhere"
    assert plot.main([str(run_dir), "--output-dir", str(other), "--what", "errors", "samples"]) == 0
    assert sorted(p.name for p in other.iterdir()) == ["errors.png", "samples.png"]


def test_a_run_without_predictions_still_gets_its_curves(tmp_path, tiny_mnist, capsys):
    _, cache, _ = tiny_mnist
    run_dir = make_run(tmp_path, data_dir=cache)  # without test_predictions.npz
    assert plot.main([str(run_dir), "--what", "curves", "confusion", "errors", "layers"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("curves.png") and sorted(p.name for p in (run_dir / "plots").iterdir()) == [
        "curves.png"
    ]
    assert err.count("\n") == 2 and f"skipped confusion, errors: no {PREDICTIONS}" in err
    assert f"skipped layers: no {weights.FILENAME}" in err
    assert plot.main([str(run_dir), "--what", "confusion"]) == 1  # nothing it was asked for could be made


def test_curves_name_the_held_out_split_and_the_criterion():
    metrics = plot.columns(EPOCHS)
    for cfg, held_out, loss in (
        (Config(), "validation", "cross-entropy"),
        (Config(arch="lecun98", validate_on_test=True), "test", "MAP criterion"),
    ):
        fig = plot.curves_figure(metrics, cfg)
        for ax in fig.axes:
            assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", held_out]
        assert fig.axes[0].get_ylabel() == loss


def test_bad_input_gets_one_line(tmp_path, capsys):
    for argv in ([str(tmp_path)], [str(tmp_path / "missing")], [str(tmp_path), "--what", "bars"]):
        with pytest.raises(SystemExit) as exit_:
            plot.main(argv)
        assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_class_names_come_from_the_run(tmp_path):
    run_dir = make_run(tmp_path)
    assert RunFolder(run_dir).classes() == [str(digit) for digit in range(10)]  # MNIST's, as Run writes them
    (run_dir / "classes.json").write_text(json.dumps(["cat", "dog", "cow"]))
    assert RunFolder(run_dir).classes() == ["cat", "dog", "cow"]


def test_confusion_matrix_and_figures_for_any_class_count():
    labels, predictions = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    counts, share = plot.confusion_matrix(labels, predictions, 4)
    assert counts.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(np.diag(share), [0.5, 1, 2 / 3, 0])
    fig = plot.confusion_figure(labels, predictions, ["cat", "dog", "cow", "yak"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cat", "dog", "cow", "yak"]
    images = np.zeros((6, 28, 28), np.uint8)
    fig = plot.samples_figure(images, labels, ["cat", "dog", "cow", "yak"], per_class=3)
    assert len(fig.axes) == 12  # one row per class, blank cells where a class has fewer


def test_damaged_run_files_get_one_line(run_with_predictions, capsys):
    (run_with_predictions / PREDICTIONS).write_bytes(b"not a zip file")
    with pytest.raises(SystemExit) as exit_:
        plot.main([str(run_with_predictions)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{PREDICTIONS} is damaged" in err and err.count("\n") == 1


@pytest.mark.parametrize("kinds", ["affine", "affine,elastic"])
def test_augmented_shows_each_class_then_its_distortions(kinds):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8)
    labels = np.arange(30) % 3
    fig = plot.augmented_figure(images, labels, ["a", "b", "c"], kinds, seed=1, per_class=4)
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 3 * 4 and fig.get_suptitle().startswith(f"--augment {kinds} (as this run trained)")
    for row, first in enumerate((0, 1, 2)):  # the first image of each class, then three distortions
        original, *distorted = shown[row * 4 : row * 4 + 4]
        assert np.abs(original - images[first]).max() < 0.01
        assert all(d.min() >= 0 and d.max() <= 255 and np.abs(d - original).mean() > 1 for d in distorted)


def test_layers_shows_saturation_the_training_error_and_the_papers_h():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (40, 1, 28, 28)), np.arange(40) % 10
    params = {k: rng.normal(0, 0.1, shape) for k, shape in weights.shapes().items()}
    params["c1.bias"][:] = [-100, 100] * 3  # three of C1's six maps never fire, three always do: half at 0
    params["output.weight"][:] = 0
    params["output.bias"][:] = np.eye(10)[3]  # every image read as a 3: 36 of 40 wrong
    fig = plot.layers_figure(params, weights.make_meta("max", "relu"), x, y, test_error=0.25, title="run")
    title = "run: training error 90.00% on its 40 training images as they are, test error 25.00%"
    assert fig.get_suptitle().startswith(title) and fig.get_suptitle().endswith("(ReLU: at 0)")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and titles[0].startswith("C1: 50% saturated") and titles[1].startswith("C3: ")

    params = {k: rng.uniform(-1, 1, shape) for k, shape in lecun98.param_shapes().items() if k != "output.weight"}
    params = {k: v * lecun98.init_bound(k, "sqrt-fan-in") for k, v in params.items()}
    params["output.weight"] = lecun98.RBF_CENTRES
    fig = plot.layers_figure(params, weights.make_meta("max", "relu", arch="lecun98"), x, y, mu=0.04)
    h = sdlm.paper_hessian(params, x)
    bars = [bar.get_height() for bar in fig.axes[6].patches]
    np.testing.assert_allclose(bars, [np.median(h[f"{n}.weight"]) for n in lecun98.LAYERS[:-1]], rtol=1e-6)
    assert [ax.get_title().split(":")[0] for ax in fig.axes[:6]] == [n.upper() for n in lecun98.LAYERS[:-1]]
    assert fig.axes[6].get_title().endswith("mu = 0.04") and fig.axes[6].lines[0].get_ydata()[0] == 0.04
    assert "ReLU" not in fig.get_suptitle()  # lecun98's units squash; its config's --activation means nothing


@pytest.mark.parametrize("name", [*reference.ACTIVATION, "lecun98"])
def test_each_slope_is_the_activations_derivative_over_its_largest(name):
    f = lecun98.squash if name == "lecun98" else reference.ACTIVATION[name]
    a = np.linspace(-4, 4, 800)  # +-0.005 nearest 0: not at ReLU's kink, and the others' slopes there their largest
    slope = (f(a + 1e-6) - f(a - 1e-6)) / 2e-6
    np.testing.assert_allclose(reference.SLOPE[name](f(a)), slope / slope.max(), atol=1e-4)
