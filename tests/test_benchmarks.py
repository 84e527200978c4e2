"""The benchmark scripts run and print finite ratios (a tiny configuration: this checks they work, not speed)."""

import math
import os
import runpy
import subprocess
import sys

from conftest import REPO


def run_benchmark(name, *args):
    """In its own process: for the scripts that set TensorFlow up themselves or import the peer libraries."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()


def run_benchmark_here(name, *args, monkeypatch, capsys):
    """In this process, as ``python benchmarks/NAME ARGS`` would run it: TensorFlow is already loaded here,
    which saves the seconds a new process spends importing it."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.setattr(sys, "argv", [name, *args])
    capsys.readouterr()
    runpy.run_path(str(REPO / "benchmarks" / name), run_name="__main__")
    return capsys.readouterr().out.splitlines()


def table_row(lines, label):
    [row] = [line for line in lines if line.startswith(label)]
    return [float(cell.rstrip("x")) for cell in row[len(label):].split()]


def test_filter_benchmark_compares_speed_and_quality(monkeypatch, capsys):
    lines = run_benchmark_here("filters.py", "--filters", "2", "--steps", "6", "--size", "96",
                               "--bundled-layers", "block2_sepconv2", "--bundled-steps", "4",
                               monkeypatch=monkeypatch, capsys=capsys)
    rows = {label: table_row([line.replace(" -", "") for line in lines], label)
            for label in ("recipe", "warm loop", "plain batch", "xconv")}
    for label, (seconds, vs_recipe, vs_plain, activation, saved, *robust) in rows.items():
        assert seconds > 0 and all(math.isfinite(v) for v in (activation, saved)), label
    assert rows["recipe"][1] == 1.0 and rows["plain batch"][2] == 1.0
    assert rows["xconv"][4] > 0 and 0 < rows["xconv"][5] < 2  # the ascent switched its filters on; robustness
    plain, default = (line.split() for line in lines if line.startswith("block2_sepconv2"))
    assert plain[1] == "plain" and default[1] == "default"
    assert all(0 <= float(cell) <= 1 for cell in (plain[3], default[3]))  # high-frequency shares


def test_gradcam_benchmark_reports_the_ratio_to_a_forward_pass(monkeypatch, capsys):
    lines = run_benchmark_here("gradcam.py", "--repeats", "1", "--batches", "2", monkeypatch=monkeypatch, capsys=capsys)
    forward, gradcam, ratio = table_row(lines, "    2")
    assert forward > 0 and gradcam > 0 and math.isclose(ratio, gradcam / forward, rel_tol=0.05)


def test_methods_benchmark_reports_every_method_against_its_floor():
    lines = run_benchmark("methods.py", "--model", "tiny", "--batch", "4", "--images", "2", "--repeats", "1",
                          "--rise-masks", "16", "--top", "4", "--ig-images", "2", "--ig-steps", "4",
                          "--samples", "2", "--steps", "4", "--patch", "16", "--stride", "16")
    for method in ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam"):
        milliseconds, ratio = table_row(lines, method + " ")
        assert milliseconds > 0 and math.isfinite(ratio)
    for method in ("smoothgrad", "integrated-gradients", "occlusion", "rise", "scorecam"):
        [row] = [line.split() for line in lines if line.startswith(method + " ")][:1]
        per_image, forward_multiple, floor_multiple = (float(cell.rstrip("x")) for cell in row[1:4])
        assert per_image > 0 and forward_multiple >= floor_multiple > 0
    assert any(line.startswith("integrated gradients, 2 images x 4 steps") and "MB" in line for line in lines)


def test_metrics_benchmark_reports_deletion_and_insertion_against_the_floor(monkeypatch, capsys):
    lines = run_benchmark_here("metrics.py", "--model", "tiny", "--images", "4", "--batch", "4", "--repeats", "1",
                               "--steps", "4", monkeypatch=monkeypatch, capsys=capsys)
    for name in ("deletion", "insertion"):
        [row] = [line.split() for line in lines if line.startswith(name) and line.split()[1] == "xconv"]
        milliseconds, forward_multiple, floor_multiple, auc = (float(cell.rstrip("x")) for cell in row[2:6])
        assert milliseconds > 0 and forward_multiple > floor_multiple > 0 and 0 <= auc <= 1


def test_cpu_kernel_benchmark_measures_both_settings():
    lines = run_benchmark("cpu_kernels.py", "--batch", "2", "--repeats", "1", "--no-inception")
    assert lines[0].endswith("off False, on True")  # each process really ran with the setting it names
    for label in ("bundled forward, batch 2", "bundled gradcam, batch 2"):
        off, on, speed_up = table_row(lines, label)
        assert off > 0 and on > 0 and math.isclose(speed_up, off / on, rel_tol=0.05)
