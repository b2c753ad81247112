"""Batches read ahead by background threads, for data that is read from disk while the devices train.

    with Prefetch(source.read, batches_of_indices, depth=4) as batches:
        for images, labels in batches:        # read(indices) ran in a worker thread
            ...

At most `depth` reads are queued or running at a time (a bounded queue), so a slow consumer holds at most `depth`
batches in memory; results come back in the order of `chunks`. An exception raised by `read` is raised again by
the iteration, at the batch where it happened; leaving the `with` block (or close()) stops the reads still queued.
"""
import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

_END = object()


class Prefetch:
    """Iterate over read(chunk) for each chunk of `chunks`, computed up to `depth` ahead by `workers` threads."""

    def __init__(self, read: Callable, chunks: Iterable, *, depth: int = 4, workers: int = 1):
        if depth < 1 or workers < 1:
            raise ValueError(f"Prefetch: depth and workers must be at least 1, got {depth} and {workers}")
        self._read, self._chunks = read, iter(chunks)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="jaxcnn-prefetch")
        self._pending = collections.deque()
        for _ in range(depth):
            self._submit()

    def _submit(self):
        chunk = next(self._chunks, _END)
        if chunk is not _END:
            self._pending.append(self._pool.submit(self._read, chunk))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            raise StopIteration
        future = self._pending.popleft()
        self._submit()
        return future.result()

    def close(self):
        """Cancel the reads not started and wait for those running."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
