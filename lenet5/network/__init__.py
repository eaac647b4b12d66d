"""The network in numpy: LeNet-5 and the 1998 paper's lecun98 (with SDLM's curvature), the reference
forward pass every framework is tested against, every weight's shape, and model.npz, the neutral weights."""
