# The two commands:  make train  (the default model, PyTorch)  and  make test  (every framework).
# Each framework's virtual environment is built on first use from requirements/<framework>.txt,
# in .venvs/ (or $LENET5_VENV_DIR), and rebuilt only when those requirements change.
#
#   make train FRAMEWORK=pytorch ARGS="--epochs 20 --pooling avg"
#   make test-pytorch PYTEST_ARGS="-k resume"
#   make envs                      build all three environments now

PYTHON ?= python3
FRAMEWORK ?= pytorch
FRAMEWORKS := pytorch tensorflow mxnet
ARGS ?=
PYTEST_ARGS ?=
ENVS := $(PYTHON) -m lenet5.envs

.PHONY: train test envs $(addprefix test-,$(FRAMEWORKS)) $(addprefix env-,$(FRAMEWORKS))

train:
	$(ENVS) run $(FRAMEWORK) train_$(FRAMEWORK)/train.py $(ARGS)

# The neutral tests run in every environment: each has its own numpy.
test: $(addprefix test-,$(FRAMEWORKS))

$(addprefix test-,$(FRAMEWORKS)): test-%:
	$(ENVS) run $* -m pytest tests/core tests/$* $(PYTEST_ARGS)

envs: $(addprefix env-,$(FRAMEWORKS))

$(addprefix env-,$(FRAMEWORKS)): env-%:
	$(ENVS) ensure $*
