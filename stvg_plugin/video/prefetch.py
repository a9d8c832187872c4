"""Decoding videos ahead of their consumer (:class:`PrefetchLoader`), in threads or processes.

Every failure becomes a :class:`VideoReadError` value for its item, so one bad video never stops a run.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from stvg_plugin.video.sampling import _set_decode_threads, sample_video
from stvg_plugin.video.types import SampledVideo, VideoReadError


def _call_safely(sample_fn: Callable[[Any], SampledVideo], item: Any) -> SampledVideo | VideoReadError:
    """Turn any failure into a value so one bad video never stops a run."""
    try:
        return sample_fn(item)
    except VideoReadError as exc:
        return exc
    except Exception as exc:  # reported per item, with its type
        return VideoReadError(str(item), f"{type(exc).__name__}: {exc}")


class PrefetchLoader:
    """Decode videos ahead of the consumer and yield ``(item, SampledVideo | VideoReadError)`` in order.

    Threads are the default: PyAV and decord release the GIL while decoding, and threads avoid
    pickling frames between processes (see ``bench/bench_video.py``). At most ``prefetch``
    results wait in memory. ``num_workers=0`` decodes in the caller's thread. ``sample_fn``
    defaults to ``sample_video(item)``; for ``executor="process"`` it must be a module-level
    function. ``decode_threads`` is the decoder thread count inside each worker for calls that
    leave ``sample_video(threads=None)``; None = 1 with several workers (the workers already fill
    the cores; FFmpeg's threads in each would only contend with the other worker's), else
    ``sample_video``'s own rule.
    """

    def __init__(
        self,
        items: Iterable[Any],
        sample_fn: Callable[[Any], SampledVideo] | None = None,
        num_workers: int = 2,
        prefetch: int | None = None,
        executor: str = "thread",
        decode_threads: int | None = None,
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', got {executor!r}")
        if decode_threads is not None and decode_threads < 0:
            raise ValueError(f"decode_threads must be >= 0, got {decode_threads}")
        self.items = items
        self.sample_fn = sample_fn if sample_fn is not None else sample_video
        self.num_workers = num_workers
        self.prefetch = prefetch if prefetch is not None else max(2 * num_workers, 1)
        self.executor = executor
        self.decode_threads = decode_threads if decode_threads is not None else (1 if num_workers > 1 else None)

    def _make_executor(self) -> Executor:
        init = {"initializer": _set_decode_threads, "initargs": (self.decode_threads,)}
        if self.executor == "process":
            import multiprocessing

            return ProcessPoolExecutor(self.num_workers, mp_context=multiprocessing.get_context("spawn"), **init)
        return ThreadPoolExecutor(self.num_workers, thread_name_prefix="stvg-video", **init)

    def __iter__(self) -> Iterator[tuple[Any, SampledVideo | VideoReadError]]:
        if self.num_workers == 0:
            for item in self.items:
                yield item, _call_safely(self.sample_fn, item)
            return
        pool = self._make_executor()
        pending: collections.deque[tuple[Any, Future]] = collections.deque()
        try:
            for item in self.items:
                pending.append((item, pool.submit(_call_safely, self.sample_fn, item)))
                if len(pending) >= self.prefetch:
                    yield self._pop(pending)
            while pending:
                yield self._pop(pending)
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _pop(pending: collections.deque) -> tuple[Any, SampledVideo | VideoReadError]:
        item, fut = pending.popleft()
        try:
            return item, fut.result()
        except Exception as exc:  # e.g. a crashed worker process
            return item, VideoReadError(str(item), f"worker failed: {type(exc).__name__}: {exc}")
