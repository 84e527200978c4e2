"""Explaining a dataset on a Ray cluster with Ray Data (``xconv explain ... --engine ray``).

:class:`RayExplainer` is a callable class for ``Dataset.map_batches``: each actor loads the model once,
then decodes, explains and renders the batches it is given with the same :class:`xconv.batch_job.ExplainJob`
the local engine uses, so files and manifest records are the same. It returns one JSON record per input;
the driver appends them to ``manifest.jsonl`` as batches complete. The output folder must be reachable by
every worker under the same path (a shared or network file system on a real cluster).

Drop it into your own pipeline::

    ds = ray.data.from_items([{"position": i, "path": p} for i, p in enumerate(paths)])
    records = ds.map_batches(RayExplainer, fn_constructor_args=(spec, len(paths)), batch_size=16,
                             concurrency=4, num_gpus=1)   # num_gpus per actor, when the nodes have GPUs
"""

from __future__ import annotations

import _thread
import json
import threading
import time
from dataclasses import replace

import numpy as np

from xconv.batch_job import ExplainJob, JobSpec
from xconv.errors import XconvError
from xconv.streaming import Manifest, StreamSummary


def require_ray():
    try:
        import ray
    except ImportError:
        raise XconvError("--engine ray needs Ray: pip install 'xconv[ray]' (or 'ray[data]')") from None
    return ray


class RayExplainer:
    """``map_batches`` callable: {"position", "path"} columns in, {"record"} (JSON lines) out."""

    def __init__(self, spec: JobSpec, total: int):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        limit_tensorflow_threads()
        self.job = ExplainJob(spec)
        self.total = total

    def __call__(self, batch: dict) -> dict:
        positions = [int(p) for p in batch["position"]]
        paths = [str(p) for p in batch["path"]]
        images, originals, good, errors = self.job.decode(paths)
        records = []
        if len(good):
            by_path = dict(zip(paths, positions))
            numbers = [by_path[str(path)] for path in good] if self.total > 1 else 0
            records = self.job.write(self.job.compute(images, originals, good, numbers), good)
        records += [{"input": error.path, "status": "error", "error": error.reason} for error in errors]
        order = {path: position for path, position in zip(paths, positions)}
        records.sort(key=lambda record: order.get(record["input"], 0))
        return {"record": np.array([json.dumps(record) for record in records], dtype=object)}


def limit_tensorflow_threads() -> None:
    """Give TensorFlow as many threads as CPUs Ray assigned to this CPU actor: by default it takes every
    core of the node in every actor, and one actor per CPU then oversubscribes the node many times over."""
    import ray
    import tensorflow as tf

    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
    except (AssertionError, RuntimeError):  # not in a Ray worker (built in-process, e.g. to try a pipeline)
        return
    cpus = assigned.get("CPU")
    if cpus and not assigned.get("GPU"):  # a GPU actor's TensorFlow keeps its defaults
        try:
            tf.config.threading.set_intra_op_parallelism_threads(max(1, int(cpus)))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, int(cpus)))
        except RuntimeError:  # TensorFlow already running in this process: it keeps its threads
            pass


def validated_spec(spec: JobSpec) -> JobSpec:
    """``spec`` with its targets as class indices, after loading the model as the workers will: a wrong
    weights file, layer or class fails here in one line, not inside a worker."""
    job = ExplainJob(spec)
    if isinstance(spec.layer, str):
        job.model.layer_path(spec.layer)
    return replace(spec, targets=job.targets)


def explain_on_ray(paths: list, spec: JobSpec, address: str | None = None, batch_size: int = 16,
                   concurrency: int | None = None, on_records=None, validate=None) -> StreamSummary:
    """Run the job over ``paths`` on Ray (``address``: a cluster, else RAY_ADDRESS, else a local instance).

    ``validate() -> JobSpec`` (:func:`validated_spec`) checks the job in this process while Ray starts
    and its workers load the model, instead of before: both take seconds. Its error, if any, is the one
    reported; its spec (targets as indices) names the job in the manifest, as the local engine does.
    """
    ray = require_ray()
    checking = Validation(validate or (lambda: spec))
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}})
        except (ConnectionError, RuntimeError, ValueError) as error:
            checking.result()
            raise XconvError(f"could not join Ray at {address or 'a new local instance'}: {error}") from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the manifest in input order, as the local engine writes it
    manifest = Manifest(spec.out)
    job = None
    summary = StreamSummary(inputs=len(paths))
    started = time.perf_counter()
    blocks = max(1, -(-len(paths) // batch_size))
    dataset = ray.data.from_items([{"position": i, "path": str(p)} for i, p in enumerate(paths)],
                                  override_num_blocks=blocks)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    mapped = dataset.map_batches(RayExplainer, fn_constructor_args=(spec, len(paths)), batch_size=batch_size,
                                 concurrency=concurrency or max(1, min(gpus or cpus, blocks)),  # no idle actors
                                 num_gpus=1 if gpus else 0, num_cpus=1 if not gpus else None, batch_format="numpy")
    try:
        try:
            checking.watch()
            for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                job = job or checking.result().key()
                records = [{**json.loads(text), "job": job} for text in batch["record"]]
                manifest.append(records)
                for record in records:
                    if record["status"] == "ok":
                        summary.explained += 1
                        summary.files += len(record["outputs"])
                    else:
                        summary.failed += 1
                if on_records:
                    on_records(records)
        finally:
            checking.unwatch()  # a check failing from here on no longer interrupts
    except KeyboardInterrupt:
        if checking.interrupted:
            checking.result()  # raises the check's error: the interrupt was the check's, not Ctrl-C
        summary.interrupted = True
    except Exception:
        checking.result()  # the workers failed on the check's mistake: its one-line message instead
        raise
    else:
        checking.result()
    summary.seconds = time.perf_counter() - started
    return summary


class Validation:
    """Runs ``check()`` in a thread beside the workers' start. If it fails while the main thread waits for
    the workers' batches (which would fail on the same mistake, later and less readably), it interrupts
    that wait and marks the interrupt as its own; ``result()`` raises its error."""

    def __init__(self, check):
        self.outcome: dict = {}
        self.lock = threading.Lock()
        self.waiting = False
        self.interrupted = False
        self.thread = threading.Thread(target=self._run, args=(check,), name="xconv-check", daemon=True)
        self.thread.start()

    def _run(self, check):
        try:
            value = check()
        except BaseException as error:  # noqa: BLE001 - raised again by result()
            with self.lock:
                self.outcome["error"] = error
                if self.waiting:
                    self.interrupted = True
                    _thread.interrupt_main()
        else:
            self.outcome["value"] = value

    def watch(self) -> None:
        """From here a failed check interrupts the main thread (only a wait in the main thread can be
        interrupted); raises at once if it has already failed."""
        with self.lock:
            failed = "error" in self.outcome
            self.waiting = not failed and threading.current_thread() is threading.main_thread()
        if failed:
            self.result()

    def unwatch(self) -> None:
        """Called before leaving the guarded block: an interrupt sent before this returns is delivered
        while the lock is released, still inside the block's ``try``."""
        with self.lock:
            self.waiting = False

    def result(self):
        self.thread.join()
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["value"]
