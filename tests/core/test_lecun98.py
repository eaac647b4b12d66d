"""The 1998 paper's LeNet-5 (lenet5/network/lecun98.py) and its optimizer (lenet5/network/sdlm.py), checked against
the paper's own numbers and against independent computations, in numpy."""

import numpy as np
import pytest

from lenet5 import config
from lenet5.data.splits import normalize
from lenet5.network import lecun98, reference, sdlm, shapes, weights

# The paper's Table I as printed: a row per S2 map, a column per C3 map, X where connected.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""
# The paper's trainable parameters, layer by layer (Section II-B).
PAPER_PARAMS = {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48_120, "f6": 10_164, "output": 0}


def test_each_layer_has_the_papers_parameter_count():
    assert lecun98.layer_params() == PAPER_PARAMS
    assert shapes.expected_num_params(arch="lecun98") == 60_000 == sum(PAPER_PARAMS.values())


def test_the_connection_table_is_table_i():
    printed = np.array([[c == "X" for c in row] for row in TABLE_I.split()])
    np.testing.assert_array_equal(lecun98.CONNECTED.T, printed)
    assert [len(inputs) for inputs in lecun98.TABLE] == [3] * 6 + [4] * 9 + [6]


def test_the_rbf_bitmaps_are_7x12_plus_or_minus_one_and_distinct():
    assert lecun98.BITMAPS.shape == (10, 12, 7) and lecun98.RBF_CENTRES.shape == (10, 84)
    assert set(np.unique(lecun98.BITMAPS)) == {-1.0, 1.0}
    flat = lecun98.RBF_CENTRES
    hamming = (flat[:, None] != flat[None]).sum(axis=2)
    assert hamming[~np.eye(10, dtype=bool)].min() >= 4  # no two digits' codes are near each other


def test_the_map_loss_matches_a_hand_computed_example():
    # RBF outputs y = (0.5, 2, ..., 2), correct class 0, J = 0.1:
    # E = 0.5 + log(e^-0.1 + e^-0.5 + 9 e^-2) = 0.5 + log(0.904837 + 0.606531 + 1.218017) = 1.504077
    y = np.array([[0.5] + [2.0] * 9])
    assert lecun98.J == 0.1
    assert lecun98.map_loss(-y, [0])[0] == pytest.approx(1.504077, abs=1e-6)
    # It is the cross-entropy over the ten outputs -y and a constant eleventh output -J.
    z = np.concatenate([-y, [[-lecun98.J]]], axis=1)
    assert lecun98.map_loss(-y, [3])[0] == pytest.approx(-np.log(reference.softmax(z)[0, 3]))


def test_the_squashing_function():
    f = lecun98.squash
    assert f(1.0) == pytest.approx(1.0, abs=1e-4) and f(-1.0) == pytest.approx(-1.0, abs=1e-4)
    assert f(0.0) == 0 and f(50.0) == pytest.approx(1.7159)
    # its steepest gain, at 0, is 1.7159 x 2/3: about 1.14
    assert (f(1e-6) - f(-1e-6)) / 2e-6 == pytest.approx(1.7159 * 2 / 3, rel=1e-6)


def test_the_input_is_scaled_to_the_papers_background_and_ink_in_a_32x32_field():
    x = normalize(np.array([[[0] * 28] * 27 + [[255] * 28]], np.uint8))  # paper, and one row of ink
    paper = lecun98.SCALE * x + lecun98.OFFSET
    assert paper.min() == pytest.approx(-0.1, abs=1e-6) and paper.max() == pytest.approx(1.175, abs=1e-6)
    # C1 of an all-ones kernel and no bias sees the padded field: -0.1 beside the image too
    params = {k: np.zeros(s) for k, s in weights.shapes(arch="lecun98").items()}
    params["c1.weight"][0] = 1
    c1 = next(reference.trace(params, x, arch="lecun98"))[1]  # (1, 6, 28, 28)
    assert c1.shape == (1, 6, 28, 28)
    assert c1[0, 0, 0, 0] == pytest.approx(lecun98.squash(25 * -0.1))  # the corner: background only


def test_the_papers_learning_rate_schedule():
    cfg = config.Config(scheduler="paper", lr=5e-4, epochs=20)
    steps = 100  # per epoch
    rates = [config.lr_at(cfg, epoch * steps + 50, 20 * steps) for epoch in range(20)]
    assert rates == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8


def test_the_initialisation_bounds_are_the_papers():
    assert lecun98.init_bound("c1.weight").max() == pytest.approx(2.4 / 25)
    assert lecun98.init_bound("c5.weight").max() == pytest.approx(2.4 / 400)
    c3 = lecun98.init_bound("c3.weight")
    assert c3[0, 0, 0, 0] == pytest.approx(2.4 / 75) and c3[15, 0, 0, 0] == pytest.approx(2.4 / 150)
    assert (c3[~lecun98.CONNECTED] == 0).all()  # nothing where Table I has no connection


def test_weights_outside_table_i_or_for_other_class_counts_are_refused():
    params = {k: np.zeros(s, np.float32) for k, s in weights.shapes(arch="lecun98").items()}
    meta = weights.make_meta("max", "relu", arch="lecun98")
    weights.validate(params, meta)
    params["c3.weight"][0, 3] = 0.5  # C3 map 0 takes S2 maps 0, 1, 2 only
    with pytest.raises(weights.WeightsError, match="connects C3 map 0 to S2 map 3, which Table I leaves unconnected"):
        weights.validate(params, meta)
    with pytest.raises(weights.WeightsError, match="lecun98 has 10 classes"):
        weights.validate(params, weights.make_meta("max", "relu", num_classes=26, arch="lecun98"))


def test_sdlm_curvature_vectors_have_the_hessian_of_the_loss_at_f6_as_covariance():
    """The vectors SDLM backpropagates, against the loss's Hessian in F6's outputs by finite
    differences of the MAP loss: an independent computation."""
    rng = np.random.default_rng(0)
    x = lecun98.RBF_CENTRES[3] * 0.6 + rng.normal(0, 0.2, 84)  # a plausible F6 output, near a 3

    def loss(f6):
        return lecun98.map_loss(-((f6[None] - lecun98.RBF_CENTRES) ** 2).sum(axis=1)[None], [3])[0]

    eps, eye = 1e-3, np.eye(84)
    hessian = np.array([[loss(x + eps * (a + b)) - loss(x + eps * (a - b)) for b in eye] for a in eye[:12]])
    hessian = hessian - np.array([[loss(x - eps * (a - b)) - loss(x - eps * (a + b)) for b in eye] for a in eye[:12]])
    hessian /= 4 * eps**2  # the first 12 rows
    v = sdlm.curvature_vectors(np.repeat(x[None], 40_000, axis=0), seed=0, epoch=1).astype(np.float64)
    covariance = v[:, :12].T @ v / len(v)
    assert np.abs(covariance - hessian).max() < 0.06 * np.abs(hessian).max()
