"""A sweep's results from its study: one row per run (results.csv), the tables of means over
seeds (results.md) and their plot (results.png)."""

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from ..config import FRAMEWORK_NAMES as NAMES
from ..config import FRAMEWORKS
from ..files import atomic_path, write_text
from . import study

ORIGINAL = {
    ("max", "relu"): 99.07,
    ("max", "leakyrelu"): 99.00,
    ("max", "tanh"): 98.96,
    ("avg", "leakyrelu"): 98.92,
    ("avg", "relu"): 98.00,
    ("avg", "tanh"): 97.96,
}
RESULTS = ("val_accuracy", "test_accuracy", "test_loss", "train_seconds", "seconds_per_epoch")  # per run
COLUMNS = {"pooling": "Pooling", "activation": "Activation", "batch_size": "Batch-size"}
STATUS = {
    TrialState.COMPLETE: "ok",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "pending",
}


def collect(sweep_study):
    """One row per run of the study (its latest trial, for a run tried again), in the order they were
    planned: name, framework, options, status (ok, pruned, failed, running, pending), host, the
    validation accuracy after each epoch, and the results."""
    space = sweep_study.user_attrs[study.SPACE]
    rows = []
    for name, trial in study.latest_runs(sweep_study).items():
        point = {**space["fixed"], **study.params_of(trial)}
        row = {
            "name": name,
            **{k: point[k] for k in space["order"]},
            "status": STATUS[trial.state],
            "host": trial.user_attrs.get("host", ""),
            **dict.fromkeys(RESULTS, ""),
        }
        row["val_acc_per_epoch"] = " ".join(f"{v:.4f}" for _, v in sorted(trial.intermediate_values.items()))
        if trial.state == TrialState.COMPLETE:
            row.update({k: trial.user_attrs[k] for k in RESULTS[1:]})
            row["val_accuracy"] = trial.value if math.isfinite(trial.value) else math.nan
        elif trial.state == TrialState.FAIL:
            row["log_tail"] = trial.user_attrs.get("log_tail", "")
        rows.append(row)
    return rows


def option(row, key):
    """A run's option as the tables show it: lecun98 has no pooling or activation (it has the paper's
    subsampling and squashing), whatever the run's config holds for them."""
    return "-" if key in ("pooling", "activation") and row.get("arch") == "lecun98" else row[key]


def cells(rows):
    """Finished runs grouped by everything but framework and seed: {(options...): {framework: [acc %]}}.
    COLUMNS are shown even when every run has the same value, unless no run has one."""
    if not rows:
        return [], {}
    varying = [
        k
        for k in rows[0]
        if k not in ("name", "framework", "seed", "status", "host", "val_acc_per_epoch", "log_tail", *RESULTS)
        and (len({option(r, k) for r in rows}) > 1 or (k in COLUMNS and any(option(r, k) != "-" for r in rows)))
    ]
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["status"] == "ok":
            groups[tuple(option(r, k) for k in varying)][r["framework"]].append(r)
    return varying, groups


def mean_std(values):
    values = np.asarray(values, float)
    return values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0


def markdown(rows):
    varying, groups = cells(rows)
    frameworks = [f for f in FRAMEWORKS if any(r["framework"] == f for r in rows)]
    head = [COLUMNS.get(k, k) for k in varying]
    lines = []
    for fw in frameworks:
        lines += [
            f"### {NAMES[fw]}",
            "",
            "| " + " | ".join(head + ["Accuracy", "Seeds", "s/epoch", "Validation accuracy"]) + " |",
            "|" + "---|" * (len(head) + 4),
        ]
        for key, by_fw in groups.items():
            if fw in by_fw:
                acc = mean_std([100 * r["test_accuracy"] for r in by_fw[fw]])
                val = mean_std([100 * r["val_accuracy"] for r in by_fw[fw]])
                sec = np.median([r["seconds_per_epoch"] for r in by_fw[fw]])
                lines.append(
                    "| " + " | ".join(map(str, key)) + f" | {acc[0]:.2f} ± {acc[1]:.2f}% | "
                    f"{len(by_fw[fw])} | {sec:.1f} | "
                    + ("none |" if np.isnan(val[0]) else f"{val[0]:.2f} ± {val[1]:.2f}% |")
                )
        lines.append("")
    original = "pooling" in varying and "activation" in varying
    lines += [
        "### All frameworks (test accuracy, mean ± std over seeds)",
        "",
        "| " + " | ".join(head + [NAMES[f] for f in frameworks] + (["Original"] if original else [])) + " |",
        "|" + "---|" * (len(head) + len(frameworks) + original),
    ]
    for key, by_fw in groups.items():
        accs = [
            ("{:.2f} ± {:.2f}%".format(*mean_std([100 * r["test_accuracy"] for r in by_fw[f]])) if f in by_fw else "")
            for f in frameworks
        ]
        if original:
            cell = dict(zip(varying, key))
            accs.append(
                f"{ORIGINAL[(cell['pooling'], cell['activation'])]:.2f}%"
                if (cell["pooling"], cell["activation"]) in ORIGINAL and cell.get("batch_size") == 256
                else ""
            )
        lines.append("| " + " | ".join(list(map(str, key)) + accs) + " |")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", f"### Failed runs ({len(failed)})", ""]
        for r in failed:
            lines += [f"- `{r['name']}`:", "", "  ```", *("  " + line for line in r["log_tail"].splitlines()), "  ```"]
    for status, words in (
        ("pruned", "pruned: stopped early by the pruner"),
        ("running", "running"),
        ("pending", "not started"),
    ):
        count = sum(r["status"] == status for r in rows)
        if count:
            lines += ["", f"{count} runs {words}."]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varying, groups = cells(rows)
    frameworks = [f for f in FRAMEWORKS if any(r["framework"] == f for r in rows)]
    keys = list(groups)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(keys)), 4.5))
    width = 0.6 / len(frameworks)
    shown = []  # every plotted value, for the axis limits
    for i, fw in enumerate(frameworks):
        stats = [
            mean_std([100 * r["test_accuracy"] for r in groups[k][fw]]) if fw in groups[k] else (np.nan, 0)
            for k in keys
        ]
        # Points with error bars, not bars: the axis is cut far above zero.
        ax.errorbar(
            np.arange(len(keys)) + (i - (len(frameworks) - 1) / 2) * width,
            [s[0] for s in stats],
            yerr=[s[1] for s in stats],
            fmt="o",
            capsize=4,
            label=NAMES[fw],
        )
        shown += [m + e * sign for m, e in stats for sign in (-1, 1)]
    if "pooling" in varying and "activation" in varying:
        cells_ = [dict(zip(varying, k)) for k in keys]
        xs = [i for i, c in enumerate(cells_) if (c["pooling"], c["activation"]) in ORIGINAL]
        ys = [ORIGINAL[(cells_[i]["pooling"], cells_[i]["activation"])] for i in xs]
        ax.scatter(xs, ys, marker="_", s=900, color="black", zorder=3, label="original (PyTorch, 1 run)")
        shown += ys
    ax.set_xticks(np.arange(len(keys)), ["\n".join(map(str, k)) for k in keys])
    shown = [v for v in shown if np.isfinite(v)]
    if shown:
        ax.set_ylim(min(shown) - 0.2, min(100, max(shown) + 0.2))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-5 on MNIST: mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    # Below the plot, where no point can hide behind it.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write(sweep_dir, sweep_study):
    """results.csv, results.md and results.png of the study, into `sweep_dir`; returns the rows."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows = collect(sweep_study)
    fields = list(dict.fromkeys(k for r in rows for k in r if k != "log_tail"))
    with atomic_path(sweep_dir / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_text(sweep_dir / "results.md", markdown(rows))
    plot(rows, sweep_dir / "results.png")
    return rows
