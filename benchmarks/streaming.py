"""Explaining many photos: the streaming engine against a sequential loop, memory at 20,000 inputs, Ray.

    python benchmarks/streaming.py [--inputs 20000] [--small 1000] [--skip-ray] [--baseline-python PY]

Bundled model, Grad-CAM of the predicted class, an overlay PNG per photo, 2 CPU cores.
  sequential    decode a chunk of 16, explain it, render it, next chunk (how `xconv explain` ran before
                the streaming engine), in this process after the model is loaded
  streaming     xconv.streaming.stream with the same job: decoding ahead, writing behind, manifest
  memory        `xconv explain` as a command on --small and on --inputs links to the 3,000 shared photos
                (different names), each run's peak RSS
  ray           `xconv explain --engine ray` (a local Ray instance, 2 CPUs) against `--engine local`,
                as commands on the same --small photos, start-up included; the outputs are compared
  baseline      with --baseline-python, `xconv explain` on the validation photos as a command of this
                checkout against the same command of an earlier install (the Python of a virtualenv where
                that checkout is installed), both on this checkout's bundled model, best and median of --repeats each
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats-vs-dogs"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def photos() -> list[Path]:
    if not SHARED.is_dir():
        sys.exit(f"needs the photos in {SHARED}")
    return sorted(p for p in SHARED.rglob("*.jpg"))


def links(folder: Path, sources: list[Path], count: int) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"{index:06d}_{sources[index % len(sources)].name}").symlink_to(sources[index % len(sources)])
    return folder


def in_process(paths: list[Path], scratch: Path) -> tuple[float, float]:
    """Seconds for the sequential loop and for the streaming engine, the same job and photos."""
    from xconv.batch_job import ExplainJob, JobSpec
    from xconv.streaming import stream

    def job(out):
        return ExplainJob(JobSpec(out=str(out)), model=model)

    model = JobSpec().load_model()
    warm = job(scratch / "warm")
    warm.write(warm.compute(*warm.decode(paths[:16])[:3], 0), paths[:16])  # trace outside the timing
    sequential = job(scratch / "sequential")
    start = time.perf_counter()
    for begin in range(0, len(paths), 16):
        batch, originals, good, _ = sequential.decode(paths[begin:begin + 16])
        sequential.write(sequential.compute(batch, originals, good, list(range(begin, begin + len(good)))), good)
    sequential_seconds = time.perf_counter() - start
    streaming = job(scratch / "streaming")
    start = time.perf_counter()
    stream(paths, scratch / "streaming", streaming.decode, streaming.compute, streaming.write)
    return sequential_seconds, time.perf_counter() - start


def command(args: list[str], python: str = sys.executable, cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of an xconv command in its own process (run in ``cwd``, so that a
    Python started there imports its own install, not this folder's sources)."""
    probe = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
             "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
             "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)")
    output = subprocess.run([sys.executable, "-c", probe, python, "-m", "xconv.cli", *args], cwd=cwd,
                            capture_output=True, text=True, env=ENV, check=True).stdout.split()
    return float(output[0]), float(output[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--only-ray", type=int, default=0, metavar="N",
                        help="only the Ray comparison, on the first N of the 3,000 shared photos")
    parser.add_argument("--baseline-python", metavar="PY",
                        help="only the command against an earlier install's (see the module docstring)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each command (baseline)")
    args = parser.parse_args()
    sources = photos()
    validation = sorted((SHARED / "validation").rglob("*.jpg"))[:args.small]
    if args.baseline_python:
        with tempfile.TemporaryDirectory(dir=os.environ.get("XCONV_BENCH_DIR")) as scratch:
            compare_baseline(validation, Path(scratch), args.baseline_python, args.repeats)
        return
    if args.only_ray:
        with tempfile.TemporaryDirectory(dir=os.environ.get("XCONV_BENCH_DIR")) as scratch:
            compare_ray(sources[:args.only_ray], Path(scratch))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("XCONV_BENCH_DIR")) as scratch:
        scratch = Path(scratch)
        sequential, streaming = in_process(validation, scratch)
        small = links(scratch / "small", sources, args.small)
        large = links(scratch / "large", sources, args.inputs)
        small_seconds, small_rss = command(["explain", str(small), "--out", str(scratch / "out_small")])
        shutil.rmtree(scratch / "out_small")
        large_seconds, large_rss = command(["explain", str(large), "--out", str(scratch / "out_large")])
        shutil.rmtree(scratch / "out_large")
        print(f"bundled model, Grad-CAM + overlay per photo, {os.cpu_count()} CPU cores")
        print(f"{len(validation)} validation photos in this process: sequential {len(validation) / sequential:.1f}/s, "
              f"streaming {len(validation) / streaming:.1f}/s: {sequential / streaming:.2f}x")
        print(f"command on {args.small} inputs: {small_seconds:.1f} s ({args.small / small_seconds:.1f}/s), "
              f"peak RSS {small_rss:.0f} MB")
        print(f"command on {args.inputs} inputs: {large_seconds:.1f} s ({args.inputs / large_seconds:.1f}/s), "
              f"peak RSS {large_rss:.0f} MB: {large_rss / small_rss:.2f}x the peak at {args.small}")
        if args.skip_ray:
            return
        compare_ray(validation, scratch)


def compare_baseline(paths: list[Path], scratch: Path, baseline_python: str, repeats: int) -> None:
    """The same command and model in this checkout and in an earlier install, alternating; best and median."""
    from xconv_plugins.catsdogs import bundled_model_path

    weights = str(bundled_model_path())
    seconds: dict[str, list[float]] = {"this checkout": [], "baseline": []}
    written = {}
    for attempt in range(repeats):
        for name, python in [("baseline", baseline_python), ("this checkout", sys.executable)]:
            out = scratch / f"{name.replace(' ', '_')}_{attempt}"
            seconds[name].append(command(["explain", *map(str, paths), "--weights", weights, "--out", str(out)],
                                         python, cwd=scratch)[0])
            written[name] = len(list(out.glob("*.png")))
            shutil.rmtree(out)
    best = {name: min(values) for name, values in seconds.items()}
    print(f"xconv explain on {len(paths)} validation photos as a command (start-up included), bundled model:")
    for name, values in seconds.items():
        print(f"  {name:14s} {best[name]:6.1f} s ({len(paths) / best[name]:.1f}/s; runs "
              f"{', '.join(f'{v:.1f}' for v in values)} s), {written[name]} PNGs written")
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"this checkout / baseline throughput: {best['baseline'] / best['this checkout']:.2f}x best of "
          f"{repeats}, {median['baseline'] / median['this checkout']:.2f}x median")


def compare_ray(paths: list[Path], scratch: Path) -> None:
    local_out, ray_out = scratch / "local", scratch / "ray"
    local_seconds, _ = command(["explain", *map(str, paths), "--out", str(local_out)])
    ray_seconds, _ = command(["explain", *map(str, paths), "--out", str(ray_out), "--engine", "ray"])
    names = sorted(p.name for p in local_out.glob("*.png"))
    same_files = names == sorted(p.name for p in ray_out.glob("*.png")) and all(
        filecmp.cmp(local_out / n, ray_out / n, shallow=False) for n in names)
    records = [[{**json.loads(line), "outputs": [Path(p).name for p in json.loads(line).get("outputs", [])]}
                for line in (out / "manifest.jsonl").read_text().splitlines()] for out in (local_out, ray_out)]
    print(f"ray engine on {len(paths)} photos: {ray_seconds:.1f} s against local {local_seconds:.1f} s "
          f"(start-up included): {local_seconds / ray_seconds:.2f}x the local throughput; identical files "
          f"{same_files}, identical manifest {records[0] == records[1]}")


if __name__ == "__main__":
    main()
