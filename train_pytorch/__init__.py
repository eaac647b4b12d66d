"""Training LeNet-5 with PyTorch: python train_pytorch/train.py, or python -m train_pytorch.train."""
