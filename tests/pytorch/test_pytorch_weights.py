"""PyTorch as the source of conversions: the neutral weights, the converters, ONNX and the
parity test, shared by all three frameworks (weights_contract.py)."""

from weights_contract import *  # noqa: F401,F403 - the tests every framework passes

FRAMEWORK = "pytorch"
