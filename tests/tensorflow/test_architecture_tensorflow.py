"""The layer table that lenet5.architecture draws agrees with the Keras model, layer by layer."""

import pytest

from lenet5.architecture import layer_table
from model_tensorflow import LeNet5


@pytest.mark.parametrize("num_classes", [10, 26])
def test_layer_table_matches_the_keras_model(num_classes):
    model = LeNet5(num_classes=num_classes)
    rows = layer_table(num_classes)[1:]  # after the input
    names = [layer.name for layer in model.layers]
    assert [name for name in names if name in {row["key"] for row in rows}] == [row["key"] for row in rows]
    for row in rows:
        layer = model.get_layer(row["key"])
        shape = tuple(layer.output.shape[1:])  # channels last: (height, width, maps)
        assert (shape[-1], *shape[:-1]) == row["shape"], row["name"]
        assert layer.count_params() == row["params"], row["name"]
        if row["kind"] in ("convolution", "pooling"):
            kernel = layer.kernel_size if row["kind"] == "convolution" else layer.pool_size
            assert tuple(kernel) == row["kernel"], row["name"]
    assert sum(row["params"] for row in rows) == model.count_params()
