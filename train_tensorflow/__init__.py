"""Training LeNet-5 with TensorFlow: python train_tensorflow/train.py, or python -m train_tensorflow.train."""
