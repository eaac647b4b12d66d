"""A sweep's parts: its Optuna study (study), the workers that run its trials (worker), and its
results tables (tables). The command is lenet5/sweep.py; lenet5/report.py rebuilds the tables."""
