"""The tables of python -m lenet5.bench (bench.md), from its measurements."""

from ..config import FRAMEWORK_NAMES as NAMES


def table(results, gflops, flops, onnx=None):
    lines = [
        "| framework | code | train img/s | epoch s (first) | eval img/s | to 99.0% test | test acc "
        "| peak RSS MiB | % of matmul peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fw, row in results.items():
        for kind, label in (("train.py", "train.py"), ("baseline", "baseline")):
            r = row.get(kind)
            if r is None:
                lines.append(f"| {NAMES[fw]} | {label} | failed: see its log | | | | | | |")
                continue
            to = f"{r['seconds_to_target']:.1f} s" if r["seconds_to_target"] is not None else "not reached"
            share = r["train_images_per_s"] * flops / (gflops * 1e9)
            lines.append(
                f"| {NAMES[fw]} | {label} | {r['train_images_per_s']:,.0f} | {r['epoch_seconds']:.2f} "
                f"({r['first_epoch_seconds']:.2f}) | {r['eval_images_per_s']:,.0f} | {to} | "
                f"{r['test_accuracy']:.2%} | {r['peak_rss_mib']:,.0f} | {share:.1%} |"
            )
    if onnx:
        lines.append(
            f"| onnxruntime | {onnx['model']} | | | {onnx['eval_images_per_s']:,.0f} | | "
            f"{onnx['test_accuracy']:.2%} | | |"
        )
    return "\n".join(lines)


def scaling_table(scaling, train_args):
    """train.py's training images/s per thread count (epochs after the first of a short run)."""
    if not scaling:
        return ""
    counts = sorted({int(n) for row in scaling.values() for n in row})
    lines = [
        f"\ntrain.py images/s by --threads (`{' '.join(train_args)}`):\n",
        "| framework | " + " | ".join(f"{n} thread{'s' * (n > 1)}" for n in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for fw, row in scaling.items():
        cells = [row.get(str(n)) for n in counts]
        lines.append(f"| {NAMES[fw]} | " + " | ".join(f"{c:,.0f}" if c else "failed" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def processes_table(processes, scaling, train_args):
    """train.py's training images/s in N processes of 1 thread, against 1 process of 1 and of N threads."""
    if not processes:
        return ""
    lines = [
        f"\ntrain.py images/s, data-parallel (`{' '.join(train_args)}`):\n",
        "| framework | processes x threads | images/s | vs 1 x 1 | vs 1 x N |",
        "|---|---|---:|---:|---:|",
    ]
    for fw, row in processes.items():
        for n, speed in row.items():
            one, wide = scaling.get(fw, {}).get("1"), scaling.get(fw, {}).get(n)
            cells = [f"{speed / base:.2f}x" if speed and base else "" for base in (one, wide)]
            lines.append(
                f"| {NAMES[fw]} | {n} x 1 | {f'{speed:,.0f}' if speed else 'failed'} | {cells[0]} | {cells[1]} |"
            )
    return "\n".join(lines) + "\n"


def ratios(results):
    """train.py's speed-up over its baseline per framework, and slowest vs fastest train.py."""
    out = {}
    speeds = {}
    for fw, row in results.items():
        if row.get("train.py") and row.get("baseline"):
            out[f"{fw}_speedup_over_baseline"] = (
                row["train.py"]["train_images_per_s"] / row["baseline"]["train_images_per_s"]
            )
        if row.get("train.py"):
            speeds[fw] = row["train.py"]["train_images_per_s"]
    if len(speeds) > 1:
        out["slowest_vs_fastest"] = max(speeds.values()) / min(speeds.values())
    return out
