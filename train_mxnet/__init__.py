"""Training LeNet-5 with MXNet: python train_mxnet/train.py, or python -m train_mxnet.train."""
