from .model import LeNet5

__all__ = ["LeNet5"]
