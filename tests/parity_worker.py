"""The other half of the parity test (weights_contract.py), run in a TARGET framework's own
environment: convert each run with `python -m lenet5.convert` (its main(), as the command runs
it), open the converted files with TARGET's own tools, and save their logits on the whole MNIST
test set as converted-TARGET/logits.npy in the run folder.

    python tests/parity_worker.py TARGET MNIST_DIR RUN_DIR [RUN_DIR ...]
"""
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lenet5 import convert, weights  # noqa: E402
from lenet5.data import load_splits  # noqa: E402


def main(target, data_dir, *run_dirs):
    module = importlib.import_module(f"model_{target}.convert")
    test = load_splits(0, data_dir=data_dir, progress=False).test
    for run_dir in map(Path, run_dirs):
        out = run_dir / f"converted-{target}"
        assert convert.main([str(run_dir), "--to", target, "--output", str(out)]) == 0
        _, meta = weights.load(out / weights.FILENAME)
        np.save(out / "logits.npy", module.native_logits(out / f"model{module.SUFFIX}", meta, test.x))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
