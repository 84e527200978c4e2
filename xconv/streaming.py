"""Explaining any number of inputs on one machine: decode ahead, compute, write behind, record as it goes.

Three stages overlap: a thread pool decodes the next chunks of photos while the model works on the
current one (on the main thread, one compiled call per chunk), and a writer thread renders the finished
chunk and appends its records to ``manifest.jsonl`` in the output folder. Every queue is bounded, so
memory does not grow with the number of inputs. A record is appended only after its files are
written: after a crash or Ctrl-C the manifest lists exactly what exists, and ``resume`` skips every
chunk whose inputs are all recorded with their files present (a chunk is redone whole, so file
numbering stays the same).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.jsonl"

#: Chunks decoded ahead of the model, and finished chunks waiting for the writer.
DECODE_AHEAD = 2
WRITE_BEHIND = 2


class Manifest:
    """Append-only JSON lines, one per input: what was predicted and written, or the error."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / MANIFEST

    def records(self, key=lambda record: record["input"]) -> dict:
        """The last record of every input (a resumed run appends newer ones), or per ``key(record)``, in the
        order of those lines."""
        latest = {}
        if self.path.exists():
            # Undecodable bytes make their line unreadable JSON, skipped; they ended every later run here.
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    line = line.strip()
                    if line:
                        try:
                            record = json.loads(line)
                        except json.JSONDecodeError:  # a line cut by a crash mid-write
                            continue
                        if isinstance(record, dict) and "input" in record:  # not some other tool's line
                            name = key(record)
                            latest.pop(name, None)  # kept in the order of each key's last line
                            latest[name] = record
        return latest

    def completed(self, job: str | None = None) -> set[tuple[str, int | None]]:
        """(input, position) of the inputs recorded as explained (by the same ``job``, when given) whose files
        all still exist and were not written again since for another input (two runs on a/photo.jpg and
        b/photo.jpg into one folder both write photo_gradcam_cat.png: the first one's record no longer
        describes the file). The position numbered the files (None: a lone input, whose files have no
        number); a path given twice has a record, and files, for each of its places. Each job's last record
        counts: another job's run in the same folder (another target: other files) does not undo this
        job's work unless it wrote over its files (the same names, other settings)."""
        per_job = job is not None
        records = self.latest_records(per_job)
        writer = last_writers(records)
        return {key[:2] for key, record in records.items()
                if record.get("status") == "ok" and (job is None or record.get("job") == job)
                and all(Path(p).exists() and writer.get(p) == key for p in record.get("outputs", []))
                and all(Path(p).exists() for p in record.get("shared_outputs", []))}

    def file_owners(self) -> dict[str, str]:
        """Each file the manifest records, with the input its last writer explained."""
        return {output: key[0] for output, key in last_writers(self.latest_records(per_job=True)).items()}

    def latest_records(self, per_job: bool) -> dict:
        """The last record per (input, position), or per (input, position, job) with ``per_job``."""
        return self.records(key=lambda record: (record["input"], record.get("position"))
                            + ((record.get("job"),) if per_job else ()))

    def _last_byte(self) -> bytes:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1)

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = self.path.exists() and self.path.stat().st_size > 0 and self._last_byte() != b"\n"
        with self.path.open("a", encoding="utf-8") as handle:
            # A line cut by a crash mid-write is closed first, so it cannot swallow the next record.
            handle.write(("\n" if cut else "") + "".join(json.dumps(record) + "\n" for record in records))
            handle.flush()
            os.fsync(handle.fileno())


def last_writers(records: dict) -> dict[str, tuple]:
    """Each output file of ``records`` (key -> record, in the order they were written) with the key of the
    record that wrote it last: the one whose picture the file now holds."""
    writer = {}
    for key, record in records.items():
        for output in record.get("outputs", []):
            writer[output] = key
    return writer


@dataclass
class StreamSummary:
    inputs: int = 0
    explained: int = 0
    failed: int = 0
    resumed: int = 0
    files: int = 0
    overwritten: int = 0  # files an earlier run into the folder made for another input of the same name
    seconds: float = 0.0
    interrupted: bool = False
    errors: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.explained / self.seconds if self.seconds else 0.0


class BackgroundWriter:
    """One thread running submitted jobs in order; a bounded queue, so the model waits rather than
    piling up finished chunks in memory. An error in a job is raised again by ``close``."""

    def __init__(self, capacity: int = WRITE_BEHIND):
        self.jobs: queue.Queue = queue.Queue(maxsize=capacity)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="xconv-writer", daemon=True)
        self.thread.start()

    def _work(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.error is None:
                try:
                    job()
                except BaseException as error:  # noqa: BLE001 - handed to the main thread
                    self.error = error

    def submit(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def decoded_ahead(chunks: list[list], decode: Callable, workers: int = 2):
    """Yield ``(chunk, decode(chunk))`` in order, decoding up to DECODE_AHEAD chunks ahead in threads."""
    with ThreadPoolExecutor(workers, thread_name_prefix="xconv-decode") as pool:
        pending = []
        for chunk in chunks:
            pending.append((chunk, pool.submit(decode, chunk)))
            if len(pending) > DECODE_AHEAD:
                head, future = pending.pop(0)
                yield head, future.result()
        for head, future in pending:
            yield head, future.result()


def stream(paths: list, out_dir, decode: Callable, compute: Callable, write: Callable, batch_size: int = 16,
           resume: bool = False, on_records: Callable | None = None, on_progress: Callable | None = None,
           decode_workers: int = 2, job: str | None = None) -> StreamSummary:
    """Run every input through ``decode(chunk) -> (batch, originals, good, errors)``, ``compute(batch,
    originals, good, numbers) -> result`` (main thread; ``numbers``: each good input's position among all
    inputs, which names its files, or 0 for a single input) and ``write(result, good) -> records``
    (writer thread; records of the good inputs), appending records to the manifest as chunks finish.

    ``on_records(records)`` sees each chunk's records (errors included) after they are in the manifest;
    ``on_progress(done)`` counts inputs. Ctrl-C stops after the chunk in hand: what was computed is
    still written and recorded, and the summary says ``interrupted``. ``resume`` skips the inputs the
    manifest records as done at the same position, files present; since files are named by position,
    the rest come out as they would have in one run (an input that moved, because inputs were added
    before it, is done again: its old files carry another number, one a new input may now take).
    ``job``: a fingerprint of the settings, stored in every record, so resume only skips what the same
    job did.
    """
    manifest = Manifest(out_dir)
    summary = StreamSummary(inputs=len(paths))
    earlier_owners = manifest.file_owners()
    items = list(enumerate(paths))
    if resume:
        done = manifest.completed(job)
        items = [(position, path) for position, path in items if (str(path), file_number(position, len(paths))) not in done]
        summary.resumed = len(paths) - len(items)
        if on_progress and summary.resumed:
            on_progress(summary.resumed)
    chunks = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
    writer = BackgroundWriter()
    started = time.perf_counter()

    def finish(chunk, result, good, errors):
        records = positioned_records(chunk, good, write(result, good) if result is not None else [], errors,
                                     len(paths), job)
        manifest.append(records)
        summary.explained += len(good)  # only the writer thread counts these
        summary.files += sum(len(r.get("outputs", [])) for r in records)
        summary.overwritten += sum(earlier_owners.get(output, r["input"]) != r["input"]
                                   for r in records for output in r.get("outputs", []))
        if on_records:
            on_records(records)
        if on_progress:
            on_progress(len(good) + len(errors))

    def decode_chunk(chunk):
        return decode([path for _, path in chunk])

    try:
        for chunk, (batch, originals, good, errors) in decoded_ahead(chunks, decode_chunk, decode_workers):
            summary.failed += len(errors)
            summary.errors.extend(errors)
            result = None
            if good:
                numbers = good_positions(chunk, good) if len(paths) > 1 else 0
                result = compute(batch, originals, good, numbers)
            writer.submit(lambda chunk=chunk, result=result, good=good, errors=errors: finish(chunk, result, good,
                                                                                             errors))
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        writer.close()
        summary.seconds = time.perf_counter() - started
    return summary


def file_number(position: int, total: int) -> int | None:
    """The number an input's files carry, recorded so --resume knows them: its position, or None for the
    lone input of a run (its files have no number)."""
    return position if total > 1 else None


def positioned_records(chunk: list[tuple[int, object]], good: list, records: list[dict], errors: list, total: int,
                       job: str | None = None) -> list[dict]:
    """A chunk's manifest records in input order, each with its input's file number: ``records`` are the
    explained inputs' (one per ``good`` input, in order), ``errors`` the inputs that failed. Positions are
    matched in order, so a path given twice keeps both of its places."""
    failed = [{"input": error.path, "status": "error", "error": error.reason} for error in errors]
    positions = good_positions(chunk, good) + good_positions(chunk, [error.path for error in errors])
    # strict: a record without its input's place (a writer returning more or fewer records) must not vanish.
    placed = sorted(zip(positions, records + failed, strict=True), key=lambda pair: pair[0])  # errors in place
    return [{**record, "position": file_number(position, total), **({"job": job} if job is not None else {})}
            for position, record in placed]


def good_positions(chunk: list[tuple[int, object]], good: list) -> list[int]:
    """The positions of the decoded inputs, in order (decoding keeps order and drops the bad ones)."""
    positions, remaining = [], iter(chunk)
    for path in good:
        for position, candidate in remaining:
            if str(candidate) == str(path):
                positions.append(position)
                break
    return positions
