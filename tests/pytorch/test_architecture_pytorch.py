"""The layer table that lenet5.architecture draws agrees with the PyTorch model, layer by layer."""

import pytest
import torch

from lenet5.architecture import INPUT_SHAPE, layer_table
from model_pytorch import LeNet5


@pytest.mark.parametrize("num_classes", [10, 26])
def test_layer_table_matches_the_pytorch_model(num_classes):
    model = LeNet5(num_classes=num_classes).eval()
    rows = layer_table(num_classes)[1:]  # after the input
    shapes = {}
    for row in rows:
        module = getattr(model, row["key"])
        module.register_forward_hook(lambda m, args, out, key=row["key"]: shapes.__setitem__(key, out.shape[1:]))
    with torch.no_grad():
        model(torch.zeros(1, *INPUT_SHAPE))
    assert list(shapes) == [row["key"] for row in rows]  # the model runs its layers in the table's order
    for row in rows:
        module = getattr(model, row["key"])
        assert tuple(shapes[row["key"]]) == row["shape"], row["name"]
        assert sum(p.numel() for p in module.parameters()) == row["params"], row["name"]
        if row["kind"] in ("convolution", "pooling"):
            kernel = module.kernel_size if row["kind"] == "convolution" else (module.kernel_size,) * 2
            padding = module.padding if row["kind"] == "convolution" else (module.padding,) * 2
            assert tuple(kernel) == row["kernel"] and tuple(padding) == (row["padding"],) * 2, row["name"]
    assert sum(row["params"] for row in rows) == sum(p.numel() for p in model.parameters())
