"""lenet5: the framework-neutral half of the project.

The datasets (download, idx, image_folders, data), the command line (cli), options and the LR
schedule (config), run folders (runfolder reads them; run and checkpoint write them), the neutral
weights (weights, reference, convert, onnx_export), predict, plot, sweep, report, bench and the
per-framework environments (envs). Nothing here imports a deep-learning framework;
model_<framework>/ and train_<framework>/ build on it.
"""

__version__ = "0.1.0"
