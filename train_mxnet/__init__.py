"""Training LeNet-5 with MXNet: train.py (python train_mxnet/train.py, or python -m train_mxnet.train)."""
