"""Micro-batching: concurrent requests that share a key are answered by one call on one worker thread.

The event loop never runs model code: each call goes to a single worker thread (TensorFlow already uses
every core inside one call; two calls at once would only fight over them). While a call runs, new
requests queue up, and the next call takes all of them (up to ``max_batch``), so batches grow with the
load by themselves, and no request waits for a timer when the server is idle.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import defaultdict
from concurrent.futures import Executor, Future
from typing import Any, Callable, Hashable

from xconv.cancel import Cancelled, cancellable


class ModelThread(Executor):
    """One daemon worker thread for model calls. A ThreadPoolExecutor's threads are joined when the
    interpreter exits, so Ctrl-C waited for the model call in progress (40 s for a slow filter-pattern
    run) before the server stopped; this thread is abandoned instead, its result unwanted."""

    def __init__(self, name: str = "xconv-model"):
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """The call's future; once shut down, an already-cancelled one (queued behind the stop marker, a
        request arriving while the server stops would wait out the shutdown's grace period)."""
        future = Future()
        if self._closed:
            future.cancel()
            return future
        self._work.put((future, fn, args, kwargs))
        return future

    def _serve(self) -> None:
        while (job := self._work.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                future.set_exception(error)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    job = self._work.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        self._work.put(None)
        if wait:
            self._thread.join()


class MicroBatcher:
    def __init__(self, run: Callable[[Hashable, list], list], max_batch: int = 16, executor: Executor | None = None):
        """``run(key, items)`` returns one result per item, in order; an exception fails the whole call."""
        self.run = run
        self.max_batch = max(1, int(max_batch))
        self.executor = executor or ModelThread()
        self._pending: dict[Hashable, list] = defaultdict(list)
        self._draining: dict[Hashable, asyncio.Task] = {}

    async def submit(self, key: Hashable, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending[key].append((item, future))
        if key not in self._draining:
            self._draining[key] = asyncio.create_task(self._drain(key))
        return await future

    async def call(self, function: Callable, *args) -> Any:
        """Any other model work (filter patterns), on the same worker thread. Once this coroutine is cancelled
        (its client left: the page moved on to another layer) the work stops at its next
        ``xconv.stop_if_cancelled``; a queued call never starts."""
        abandoned = threading.Event()

        def run():
            with cancellable(abandoned.is_set):
                return function(*args)

        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, run)
        except asyncio.CancelledError:
            abandoned.set()
            raise

    async def _drain(self, key: Hashable) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # requests arriving in the same loop turn join the first call
            while self._pending[key]:
                chunk = self._pending[key][:self.max_batch]
                del self._pending[key][:self.max_batch]
                live = [(item, future) for item, future in chunk if not future.cancelled()]
                if not live:
                    continue
                try:
                    results = await loop.run_in_executor(self.executor, self._run_while_wanted, key, live)
                except asyncio.CancelledError:  # closed (the queued call dropped) or this task cancelled
                    for _, future in live:
                        future.cancel()  # its requests must not wait forever
                    raise
                except Exception as error:  # noqa: BLE001 - handed to every waiting request
                    for _, future in live:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(live, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._draining.pop(key, None)
            if not self._pending.get(key):
                self._pending.pop(key, None)

    def _run_while_wanted(self, key: Hashable, live: list) -> list:
        """On the worker thread: the call, stopped between its chunks (``xconv.stop_if_cancelled``) once
        every request it serves is cancelled (their clients left: the page moved on to another method)."""
        futures = [future for _, future in live]

        def abandoned():
            return all(future.cancelled() for future in futures)

        if abandoned():  # every client left while the call waited behind other work: it never starts
            raise Cancelled
        with cancellable(abandoned):
            results = self.run(key, [item for item, _ in live])
        if len(results) != len(live):  # zip would leave the requests past the end waiting forever
            raise RuntimeError(f"the model call gave {len(results)} results for {len(live)} requests")
        return results

    def close(self) -> None:
        """Drop the queued calls and return at once, without waiting for the call in progress. Called on the
        event loop (the app's shutdown); requests still waiting are cancelled, not left to hang."""
        for waiting in self._pending.values():
            for _, future in waiting:
                future.cancel()
        self._pending.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
