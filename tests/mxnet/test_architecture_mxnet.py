"""The layer table that lenet5.architecture draws agrees with the Gluon model, layer by layer."""

import mxnet as mx
import pytest

from lenet5.architecture import INPUT_SHAPE, layer_table
from model_mxnet import LeNet5


@pytest.mark.parametrize("num_classes", [10, 26])
def test_layer_table_matches_the_gluon_model(num_classes):
    model = LeNet5(num_classes=num_classes)
    model.initialize()
    rows = layer_table(num_classes)[1:]  # after the input
    shapes = {}
    for row in rows:
        block = getattr(model, row["key"])
        block.register_forward_hook(lambda b, args, out, key=row["key"]: shapes.__setitem__(key, out.shape[1:]))
    model(mx.nd.zeros((1, *INPUT_SHAPE)))
    assert list(shapes) == [row["key"] for row in rows]  # the model runs its layers in the table's order
    for row in rows:
        block = getattr(model, row["key"])
        assert tuple(shapes[row["key"]]) == row["shape"], row["name"]
        assert sum(p.data().size for p in block.collect_params().values()) == row["params"], row["name"]
        if row["kind"] in ("convolution", "pooling"):  # Gluon keeps the operator's arguments in _kwargs only
            assert tuple(block._kwargs["kernel"]) == row["kernel"], row["name"]
            assert tuple(block._kwargs["pad"]) == (row["padding"],) * 2, row["name"]
    assert sum(row["params"] for row in rows) == sum(p.data().size for p in model.collect_params().values())
