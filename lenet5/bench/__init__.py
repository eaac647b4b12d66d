"""Training speed, side by side: each framework's train.py against an idiomatic baseline of it.

    python -m lenet5.bench                      # all three frameworks, the default recipe (~10 min)
    python -m lenet5.bench --quick              # a tiny run that only shows it works (CI)
    python -m lenet5.bench --processes 2        # and data-parallel train.py in 2 processes
    python -m lenet5.bench --device gpu         # PyTorch on a GPU, into results/bench-gpu (gpu.py)

For each framework, in its own environment, one after the other on this machine:
  * train.py with the default recipe and --validate-on-test, so that metrics.csv holds the test
    accuracy after every epoch: training images/s over the epochs after the first (warm-up),
    evaluation images/s, time to 99.0% test accuracy, peak memory (RSS) of the process;
  * the idiomatic baseline, bench/baseline_<framework>.py (PyTorch DataLoader loop, Keras
    model.fit, Gluon DataLoader loop) with the same model, data and recipe, measured the same way;
with --processes N, short train.py runs in N data-parallel processes of one thread each, each
framework's own launcher starting them (docs/distributed.md), beside one process of 1 and of N
threads (the --scaling runs); and, once, the FLOP bound: LeNet-5's FLOPs per training image and
this machine's single-precision matrix-multiply rate (numpy), so that each framework's share of
the peak shows.
It prints a table and writes bench.json and bench.md into --output-dir.

runner.py measures, tables.py writes the tables, baseline.py is what the baselines import, gpu.py
is --device gpu, and __main__.py is the command.
"""
