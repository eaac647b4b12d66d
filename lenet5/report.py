"""Rebuild a sweep's results.csv, results.md and results.png from its folder.

python -m lenet5.report runs/sweep
"""

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .config import FRAMEWORK_NAMES as NAMES
from .config import FRAMEWORKS
from .runfolder import RunFolder

# The original PyTorch project's table (batch 256, one run per cell), for comparison.
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


def collect(sweep_dir):
    """One row per planned run: its options, status (ok, failed, incomplete, pending) and results."""
    rows = []
    for run in json.loads((sweep_dir / "sweep.json").read_text())["runs"]:
        row = {
            "name": run["name"],
            "framework": run["framework"],
            **run["options"],
            "status": "pending",
            **dict.fromkeys(RESULTS, ""),
        }
        folder, log = RunFolder(sweep_dir / "runs" / run["name"]), sweep_dir / "logs" / f"{run['name']}.log"
        result = folder.result() if folder.is_run() else None
        if result:
            row.update({k: v for k, v in result.items() if k in row}, status="ok")
            row["val_accuracy"] = folder.metrics()[-1]["val_acc"]  # the last epoch's
        elif log.exists():
            lines = log.read_text(errors="replace").strip().splitlines()
            ended = lines[-1].startswith("[exit ")  # else it is running, or its sweep was stopped
            row["status"] = "failed" if ended else "incomplete"
            row["log_tail"] = "\n".join(lines[-6:-1] if ended else lines[-5:])
        rows.append(row)
    return rows


def cells(rows):
    """Finished runs grouped by everything but framework and seed: {(options...): {framework: [acc %]}}."""
    if not rows:
        return [], {}
    varying = [
        k
        for k in rows[0]
        if k not in ("name", "framework", "seed", "status", "log_tail", *RESULTS)
        and (k in COLUMNS or len({r[k] for r in rows}) > 1)
    ]
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["status"] == "ok":
            groups[tuple(r[k] for k in varying)][r["framework"]].append(r)
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
    for status, words in (("incomplete", "running or stopped before the end"), ("pending", "not started")):
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(sweep_dir):
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    fields = list(dict.fromkeys(k for r in rows for k in r if k != "log_tail"))
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "results.md").write_text(markdown(rows))
    plot(rows, sweep_dir / "results.png")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lenet5.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a folder made by python -m lenet5.sweep")
    args = parser.parse_args(argv)
    if not (args.sweep_dir / "sweep.json").is_file():
        parser.exit(2, f"lenet5.report: error: {args.sweep_dir} is not a sweep folder (no sweep.json)\n")
    write(args.sweep_dir)
    print((args.sweep_dir / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
