"""lenet5: the framework-neutral half of the project.

The lenet5 command (command, __main__: standard library only, like envs), the datasets
(download, idx, image_folders, images, augment, data), train.py's command line (cli), options and
the LR schedule (config), run folders (runfolder reads them; run and checkpoint write them),
data-parallel runs (distributed), the network and its weights (reference, lecun98, sdlm, weights,
convert, onnx_export, architecture, pretrained: the shipped models), predict, serve, plot, sweep,
study, report, bench and the per-framework environments (envs). Nothing here imports a
deep-learning framework; model_<framework>/ and train_<framework>/ build on it.
"""

__version__ = "0.1.0"
