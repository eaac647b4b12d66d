"""lenet5: the framework-neutral half of the project, in layers from the bottom up.

- config, files, arguments, envs: the options and recipes, atomic writes, what every command line
  shares, the per-framework environments (envs and the lenet5 command: standard library only);
- data/: the datasets, their download and cache, pictures, augmentation, the splits and batches;
- network/: the network in numpy (the reference forward pass, the 1998 paper's lecun98 and its
  SDLM, every weight's shape) and its framework-neutral weight file, model.npz;
- training/: what every train.py runs around its framework's step: its command line, the loop
  (fit), the run folder's writer and reader, checkpoints, stopping, data-parallel runs;
- sweeps/: a sweep's Optuna study, its workers and its tables;
- the commands: predict, serve (and models, what both open), plot, convert, onnx_export,
  architecture, pretrained, sweep, report, bench/, and command (the lenet5 command).

Each layer imports only from its own and the layers above it here (tests/core/test_docs.py
checks it). Nothing here imports a deep-learning framework; model_<framework>/ and
train_<framework>/ build on it.
"""

__version__ = "0.1.0"
