# The two commands:  make train  (the default model, PyTorch)  and  make test  (every framework).
# Everything else is the lenet5 command: python3 -m lenet5 --help (docs/command.md).
# Each framework's virtual environment is built on first use from requirements/<framework>.txt,
# in .venvs/ (or $LENET5_VENV_DIR), and rebuilt only when those requirements change.
#
#   make train FRAMEWORK=pytorch ARGS="--epochs 20 --pooling avg"
#   make test-quick                the quick tier, while working (under 3 minutes)
#   make test-pytorch PYTEST_ARGS="-k resume"
#   make envs                      build all three environments now
#   make sweep ARGS="--frameworks pytorch mxnet --lr 0.002 0.005 --seeds 0 1 --jobs 2"
#   make table                     the README's results: 3 frameworks x 6 cells x 3 seeds
#   make lint                      ruff: lint and format check (configured in pyproject.toml)
#   make recipe                    the validation runs that chose the default recipe
#   make recipe-best recipe-fast   the validation runs that chose the best and fast recipes
#   make recipes                   the README's recipes table: fast and best x 3 frameworks x 3 seeds
#   make lecun98-paper lecun98-paper-distorted lecun98-paper-mxnet lecun98-adam
#                                  the 1998 paper's network: its training, on its distortions, and Adam (docs/lecun98.md)
#   make bench                     training speed of each framework against its idiomatic baseline
#   make serve ARGS=runs/<run>     a page to draw digits on and watch the run's LeNet-5 see them
#   make models                    the shipped models/lenet5/model.npz, from a seeded run of the default recipe

PYTHON ?= python3
FRAMEWORK ?= pytorch
FRAMEWORKS := pytorch tensorflow mxnet
ARGS ?=
PYTEST_ARGS ?=
ENVS := $(PYTHON) -m lenet5.envs

# The README's results table, exactly as it was made (resumable: rerun to continue).
TABLE_ARGS := --frameworks pytorch tensorflow mxnet --pooling max avg --activation relu leakyrelu tanh \
	--batch-size 256 --seeds 0 1 2 --jobs 2 --output-dir results/table

# How the default recipe was chosen: PyTorch, on the validation split (docs/results.md).
RECIPE_ARGS := --frameworks pytorch --epochs 1 10 15 20 --lr 0.001 0.002 0.003 0.005 --seeds 0 1 \
	--jobs 2 --output-dir results/recipe

# How the best and fast recipes were chosen, on the validation split (docs/results.md).
RECIPE_BEST_ARGS := --frameworks pytorch --jobs 2
RECIPE_BEST_SWEEPS := "--augment affine affine,elastic --dropout 0 0.25 --label-smoothing 0 0.1 --epochs 20 --seeds 0 \
	--output-dir results/recipe-best" \
	"--recipe best --augment affine --label-smoothing 0.1 --epochs 30 40 --seeds 0 1 2 --output-dir results/recipe-best-epochs" \
	"--recipe best --augment paper affine --label-smoothing 0.1 0.2 --seeds 0 1 2 --output-dir results/recipe-best-distortions"
RECIPE_FAST_ARGS := --frameworks pytorch --epochs 2 --seeds 0 1 2 --jobs 1
RECIPE_FAST_SWEEPS := "--batch-size 96 128 192 256 --lr 0.003 0.005 0.008 --output-dir results/recipe-fast-batches" \
	"--batch-size 48 64 96 --lr 0.002 0.003 0.005 --label-smoothing 0 0.1 --output-dir results/recipe-fast-small" \
	"--batch-size 96 128 --lr 0.004 0.006 --label-smoothing 0.1 0.2 --output-dir results/recipe-fast-smoothing"

# The 1998 paper's network (docs/lecun98.md): its own training (20 passes, one image a step: about 1.5 hours
# on 2 cores; MXNet's, twice as slow, apart), the same on its distortions, and today's Adam with and without.
LECUN98_PAPER_ARGS := --frameworks pytorch tensorflow --recipe paper --seeds 0 1 2 --jobs 2 --output-dir results/lecun98-paper
LECUN98_DISTORTED_ARGS := --frameworks pytorch tensorflow --recipe paper-distorted --seeds 0 1 2 --jobs 2 \
	--output-dir results/lecun98-paper-distorted
LECUN98_PAPER_MXNET_ARGS := --frameworks mxnet --recipe paper --seeds 0 --output-dir results/lecun98-paper-mxnet
LECUN98_ADAM_ARGS := --frameworks pytorch --arch lecun98 --batch-size 32 --lr 0.001 --epochs 15 --augment none affine \
	--seeds 0 1 2 --jobs 2 --output-dir results/lecun98-adam

# The recipes in every framework (the README's table): fast one run at a time, for its timings.
RECIPES_ARGS := --frameworks pytorch tensorflow mxnet --seeds 0 1 2

.PHONY: train test test-quick test-tools lint serve models sweep table recipe recipe-best recipe-fast recipes lecun98-paper lecun98-paper-distorted lecun98-paper-mxnet lecun98-adam bench envs $(addprefix test-,$(FRAMEWORKS)) $(addprefix env-,$(FRAMEWORKS))

train:
	$(PYTHON) -m lenet5 train --framework $(FRAMEWORK) $(ARGS)

# Every framework's tests need all three environments: the parity test converts into the other two.
test: $(addprefix test-,$(FRAMEWORKS)) test-tools

# The neutral tests run once, in PyTorch's environment; those whose results hang on numpy, Pillow
# or matplotlib (the data pipeline, pictures, weight files, the numpy network, plots) run again in
# MXNet's, whose numpy (1.23.5) is the old one. TensorFlow's has PyTorch's numpy.
CORE_TESTS_pytorch := tests/core
CORE_TESTS_mxnet := $(addprefix tests/core/test_,data.py datasets.py augment.py images.py weights.py lecun98.py plot.py)
$(addprefix test-,$(FRAMEWORKS)): test-%: envs
	$(ENVS) run $* -m pytest $(CORE_TESTS_$*) tests/$* $(PYTEST_ARGS)

# While working (under 3 minutes): the neutral tests once, the lenet5 command, and PyTorch's
# training, resume and predict, without the tests marked slow.
test-quick: envs
	$(ENVS) run pytorch -m pytest tests/core tests/command tests/pytorch/test_pytorch.py tests/pytorch/test_predict.py \
		-m "not slow" $(PYTEST_ARGS)

# The sweep's and the benchmark's tests run train.py in the other frameworks' environments too;
# serve's (its browser test in headless Chromium) need Playwright, which only PyTorch's has; the
# lenet5 command's run its modes in every environment, from a Python with nothing installed.
test-tools: envs
	$(ENVS) run pytorch -m pytest tests/command tests/sweep tests/bench tests/serve $(PYTEST_ARGS)

# ruff lives in the PyTorch environment (requirements/pytorch.txt), like the tools' tests.
lint: env-pytorch
	$(ENVS) run pytorch -m ruff check .
	$(ENVS) run pytorch -m ruff format --check .

# Any environment serves a run of any framework; PyTorch's is the one make builds first.
serve: env-pytorch
	$(ENVS) run pytorch -m lenet5.serve $(ARGS)

# The model that lenet5 predict and serve use when given no run: PyTorch, the default recipe, seed 0.
MODEL_TRAIN := train_pytorch/train.py --seed 0 --no-progress
models: env-pytorch
	tmp=$$(mktemp -d) && $(ENVS) run pytorch $(MODEL_TRAIN) --output-dir $$tmp --run-name lenet5 \
	&& $(ENVS) run pytorch -m lenet5.pretrained $$tmp/lenet5 --command "python $(MODEL_TRAIN)" && rm -r $$tmp

sweep:
	$(ENVS) run pytorch -m lenet5.sweep $(ARGS)

table:
	$(ENVS) run pytorch -m lenet5.sweep $(TABLE_ARGS) $(ARGS)

recipe:
	$(ENVS) run pytorch -m lenet5.sweep $(RECIPE_ARGS) $(ARGS)

recipe-best:
	for sweep in $(RECIPE_BEST_SWEEPS); do $(ENVS) run pytorch -m lenet5.sweep $(RECIPE_BEST_ARGS) $$sweep $(ARGS) || exit; done

recipe-fast:
	for sweep in $(RECIPE_FAST_SWEEPS); do $(ENVS) run pytorch -m lenet5.sweep $(RECIPE_FAST_ARGS) $$sweep $(ARGS) || exit; done

lecun98-paper:
	$(ENVS) run pytorch -m lenet5.sweep $(LECUN98_PAPER_ARGS) $(ARGS)

lecun98-paper-distorted:
	$(ENVS) run pytorch -m lenet5.sweep $(LECUN98_DISTORTED_ARGS) $(ARGS)

lecun98-paper-mxnet:
	$(ENVS) run pytorch -m lenet5.sweep $(LECUN98_PAPER_MXNET_ARGS) $(ARGS)

lecun98-adam:
	$(ENVS) run pytorch -m lenet5.sweep $(LECUN98_ADAM_ARGS) $(ARGS)

recipes:
	$(ENVS) run pytorch -m lenet5.sweep $(RECIPES_ARGS) --recipe fast --jobs 1 --output-dir results/recipes-fast $(ARGS)
	$(ENVS) run pytorch -m lenet5.sweep $(RECIPES_ARGS) --recipe best --jobs 2 --output-dir results/recipes-best $(ARGS)

# The speed table (docs/speed.md): each framework's train.py against its idiomatic baseline (~10 min).
bench: envs
	$(ENVS) run pytorch -m lenet5.bench --output-dir results/bench $(ARGS)

envs: $(addprefix env-,$(FRAMEWORKS))

$(addprefix env-,$(FRAMEWORKS)): env-%:
	$(ENVS) ensure $*
