from .model import LeCun98, LeNet5, build, model_of, num_params

__all__ = ["LeCun98", "LeNet5", "build", "model_of", "num_params"]
