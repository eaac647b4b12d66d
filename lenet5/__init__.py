"""lenet5: the framework-neutral half of the project.

MNIST download and parsing (data), the command line (cli), options and the LR schedule (config),
run folders and result files (run), and the per-framework environments (envs). Nothing here
imports a deep-learning framework; model_<framework>/ and train_<framework>/ build on it.
"""
__version__ = "0.1.0"
