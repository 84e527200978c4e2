"""Explaining a dataset on a Ray cluster with Ray Data (``xconv explain ... --engine ray``).

:class:`RayExplainer` is a callable class for ``Dataset.map_batches``: each actor loads the model once,
then decodes, explains and renders the batches it is given with the same :class:`xconv.batch_job.ExplainJob`
the local engine uses, so files and manifest records are the same. It returns one JSON record per input;
the driver appends them to ``manifest.jsonl`` as batches complete. The output folder must be reachable by
every worker under the same path (a shared or network file system on a real cluster).

Drop it into your own pipeline::

    ds = ray.data.from_items([{"position": i, "path": p} for i, p in enumerate(paths)])
    records = ds.map_batches(RayExplainer, fn_constructor_args=(spec, len(paths)), batch_size=16,
                             compute=ray.data.ActorPoolStrategy(size=4), num_gpus=1)  # GPUs per actor, if any
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from xconv.batch_job import ExplainJob, JobSpec
from xconv.errors import XconvError
from xconv.streaming import Manifest, StreamSummary, good_positions, positioned_records


def require_ray():
    try:
        import ray
    except ImportError:
        raise XconvError("--engine ray needs Ray: pip install 'xconv[ray]' (or 'ray[data]')") from None
    return ray


class RayExplainer:
    """``map_batches`` callable: {"position", "path"} columns in (and "input", the path as the user gave
    it, to record; default: "path"), {"record"} (JSON lines) out."""

    def __init__(self, spec: JobSpec, total: int):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        limit_tensorflow_threads()
        self.total = total
        self.failure: XconvError | None = None
        try:
            self.job = ExplainJob(spec)
        except XconvError as error:
            # Raised with the first batch instead: a failed actor start reaches the driver as text only,
            # a failed batch as the error itself, which the driver reports in one line.
            self.failure = error
            return
        self.key = self.job.key()

    def __call__(self, batch: dict) -> dict:
        if self.failure is not None:
            raise self.failure
        positions = [int(p) for p in batch["position"]]
        paths = [str(p) for p in batch["path"]]
        # "input": the path as the user gave it, recorded so a local --resume matches it; "path" is absolute,
        # and two spellings of one file share it, so each record takes the spelling of its own position.
        given = dict(zip(positions, (str(p) for p in batch.get("input", batch["path"]))))
        images, originals, good, errors = self.job.decode(paths)
        chunk = list(zip(positions, paths))
        written = []
        if len(good):
            numbers = good_positions(chunk, good) if self.total > 1 else 0
            written = self.job.write(self.job.compute(images, originals, good, numbers), good)
        records = positioned_records(chunk, good, written, errors, self.total, self.key)
        # One record per input, in input order; the fields keep the order the local engine writes them in.
        records = [{**record, "input": given[position]}
                   for record, position in zip(records, sorted(positions), strict=True)]
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


def explain_on_ray(paths: list, spec: JobSpec, address: str | None = None, batch_size: int = 16,
                   concurrency: int | None = None, on_records=None, out_as_given: str | None = None) -> StreamSummary:
    """Run the job over ``paths`` on Ray (``address``: a cluster, else RAY_ADDRESS, else a local instance).

    ``spec.out`` must be absolute (workers have their own working directory); ``out_as_given``, the folder
    as the user wrote it, is what the manifest's file names start with, as the local engine's do.

    This process does no TensorFlow work: the workers load the model, and a mistake they meet (a wrong
    weights file, layer or class) comes back as the error itself, raised here to print in one line.
    """
    ray = require_ray()
    if not ray.is_initialized():
        try:
            # No runtime_env: one makes Ray start fresh workers through its runtime-env agent, 2-3 s
            # before the first actor exists; RayExplainer quiets TensorFlow itself, before importing it.
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise XconvError(f"could not join Ray at {address or 'a new local instance'}: {error}") from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the manifest in input order, as the local engine writes it
    context.raise_original_map_exception = True  # a worker's XconvError arrives as itself, not as text
    manifest = Manifest(spec.out)
    summary = StreamSummary(inputs=len(paths))
    started = time.perf_counter()
    blocks = max(1, -(-len(paths) // batch_size))
    # Workers do not share the driver's working directory: they read absolute paths, links not followed
    # (files are named after the path's own name, as the local engine names them).
    dataset = ray.data.from_items([{"position": i, "path": str(Path.cwd() / p), "input": str(p)}
                                   for i, p in enumerate(paths)], override_num_blocks=blocks)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = concurrency or max(1, min(gpus or cpus, blocks))  # no idle actors
    mapped = dataset.map_batches(RayExplainer, fn_constructor_args=(spec, len(paths)), batch_size=batch_size,
                                 compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0,
                                 num_cpus=1 if not gpus else None, batch_format="numpy")
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    try:
        # Ray Data logs a failed batch with its traceback before raising it; a mistake of the user's is
        # reported below in one line, and any other error is raised again with its traceback.
        ray_data_log.setLevel(logging.CRITICAL)
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            records = [json.loads(text) for text in batch["record"]]
            if out_as_given is not None:
                records = [outputs_under(record, spec.out, out_as_given) for record in records]
            manifest.append(records)
            for record in records:
                if record["status"] == "ok":
                    summary.explained += 1
                    summary.files += len(record["outputs"])
                else:
                    summary.failed += 1
            if on_records:
                on_records(records)
    except KeyboardInterrupt:
        summary.interrupted = True
    except Exception as error:
        cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError keeps the worker's exception
        if isinstance(cause, XconvError):
            raise cause from None
        raise
    finally:
        ray_data_log.setLevel(level)
    summary.seconds = time.perf_counter() - started
    return summary


def outputs_under(record: dict, written_in: str, shown_in: str) -> dict:
    """``record`` with its files named under ``shown_in`` instead of ``written_in``, the same folder, the
    way the local engine names them (``Path(out) / name``: "./x.png" is "x.png")."""
    renamed = {key: [str(Path(shown_in) / os.path.relpath(path, written_in)) for path in record[key]]
               for key in ("outputs", "shared_outputs") if key in record}
    return {**record, **renamed}
