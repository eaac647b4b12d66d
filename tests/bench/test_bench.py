"""The benchmark in its tiny mode, in all three environments: that it runs and reports, not how
fast anything is (timings are never tested). And its FLOP count against PyTorch's own."""

import argparse
import json
import os
import subprocess
import sys

from conftest import ROOT

from lenet5.bench import runner


def test_quick_benchmark_measures_every_framework_and_its_baseline(tmp_path, mnist_dir):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "lenet5.bench", "--quick", "--processes", "2", "--output-dir", str(out)]
        + ["--data-dir", str(mnist_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "bench.json").read_text())
    assert set(summary["results"]) == {"pytorch", "tensorflow", "mxnet"}
    for framework, row in summary["results"].items():
        for kind in ("train.py", "baseline"):
            r = row[kind]
            assert r["epochs"] == 2 and 0.5 < r["test_accuracy"] <= 1, (framework, kind, r)
            assert r["train_images_per_s"] > 0 and r["eval_images_per_s"] > 0 and r["peak_rss_mib"] > 50
    assert set(summary["ratios"]) == {f"{fw}_speedup_over_baseline" for fw in summary["results"]} | {
        "slowest_vs_fastest"
    }
    assert summary["matmul_gflops"] > 0
    onnx = summary["onnxruntime"]  # the PyTorch run's weights, exported: its test accuracy
    assert onnx["eval_images_per_s"] > 0
    assert abs(onnx["test_accuracy"] - summary["results"]["pytorch"]["train.py"]["test_accuracy"]) < 0.002
    cores = len(os.sched_getaffinity(0))
    assert all(
        set(row) == {str(2**i) for i in range(cores.bit_length()) if 2**i <= cores} and all(v > 0 for v in row.values())
        for row in summary["thread_scaling_images_per_s"].values()
    )
    processes = summary["processes_images_per_s"]  # each framework's launcher, 2 processes
    assert set(processes) == set(summary["results"]) and all(row["2"] > 0 for row in processes.values())
    table = (out / "bench.md").read_text()
    assert table.count("| 2 x 1 |") == 3
    assert table.count("| train.py |") == 3 and table.count("| baseline |") == 3 and "| onnxruntime |" in table
    assert "| PyTorch | train.py |" in proc.stdout


def test_a_failing_framework_is_reported_and_the_others_still_measured(tmp_path, mnist_dir, monkeypatch):
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'boom' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("LENET5_MXNET_PYTHON", str(broken))
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenet5.bench",
            "--quick",
            "--frameworks",
            "pytorch",
            "mxnet",
            "--scaling",
            "--output-dir",
            str(out),
            "--data-dir",
            str(mnist_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "FAILED: mxnet train.py" in proc.stdout + proc.stderr
    summary = json.loads((out / "bench.json").read_text())
    assert summary["results"]["mxnet"] == {"train.py": None, "baseline": None}
    assert summary["results"]["pytorch"]["train.py"]["epochs"] == 2


def test_flops_per_image_agree_with_pytorchs_flop_counter():
    import torch  # runs in the PyTorch environment, where make test runs it
    from torch.utils.flop_counter import FlopCounterMode

    from model_pytorch import LeNet5

    forward, training = runner.flops_per_image()
    model, x = LeNet5(), torch.zeros(4, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        logits = model(x)
    assert counter.get_total_flops() == 4 * forward
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    assert counter.get_total_flops() == 4 * training
    assert logits.shape == (4, 10)


def test_the_gpu_benchmark_measures_its_loops_here_on_the_cpu(tmp_path, mnist_dir, monkeypatch, capsys):
    """python -m lenet5.bench --device gpu, run on the CPU (CI has no GPU) in its tiny mode: train.py
    captured (eager on a CPU), eager and fast, the DataLoader baseline, the hand-captured loop, and
    runs sharing the device each train and are reported. (torch.compile's row is left to the GPU:
    compiling takes minutes on two cores.)"""
    from lenet5.bench import gpu

    measurements = gpu.measurements
    monkeypatch.setattr(gpu, "measurements", lambda *a: [m for m in measurements(*a) if "compile" not in m[0]])
    monkeypatch.setattr(gpu, "SHARING", (1, 2))
    args = argparse.Namespace(train_args=runner.QUICK, quick=True, data_dir=str(mnist_dir), threads=0)
    work = tmp_path / "runs"
    work.mkdir()
    assert gpu.main(args, ["python -m lenet5.bench", "--device", "gpu"], tmp_path, work, "no GPU", "cpu") == 0
    summary = json.loads((tmp_path / "bench.json").read_text())
    assert summary["gpu"] == "no GPU"
    loops = ["train.py", "train.py, eager steps", "train.py --recipe fast", "DataLoader baseline", "hand-captured loop"]
    assert list(summary["results"]) == loops
    for name, r in summary["results"].items():
        assert r["epochs"] == 2 and 0.5 < r["test_accuracy"] <= 1 and r["epoch_seconds"] > 0, (name, r)
    assert list(summary["sharing"]) == ["1", "2"]
    assert all(r["runs"] == int(n) and r["model_epochs_per_s"] > 0 for n, r in summary["sharing"].items())
    table = (tmp_path / "bench.md").read_text()
    assert table.count(" | 1.0x |") >= 1 and "| hand-captured loop | " in table and "\n| 2 | " in table
    assert table in capsys.readouterr().out
