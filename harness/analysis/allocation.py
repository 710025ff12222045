"""Freed memory kept for the next identity range instead of handed back to the system.

Every range allocates and frees the same few hundred MB of arrays. By default glibc's malloc
(numpy's arrays) gives large blocks back as soon as they are freed (mapped apart above its
threshold, or trimmed off the heap's top) and Arrow's default allocator (mimalloc) purges freed
pages within milliseconds, so each range faults the same memory in again, zeroed by the kernel:
on a 6 M-record history, about 230,000 page faults and a quarter of the analysis's CPU time
spent in the kernel. Inside ``freed_memory_kept`` glibc keeps its blocks (a 32 MB mapping
threshold, no trimming) and Arrow allocates from jemalloc with page purging off; on the way
out both give back what they hold and the previous Arrow pool is restored. Peak memory is
unchanged (what is kept is what the previous range used); numbers in docs/benchmarks.md.

Elsewhere than glibc (musl, macOS) or without Arrow's jemalloc (Windows wheels) the part that
does not apply is left alone.
"""

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20
"""glibc's largest (``DEFAULT_MMAP_THRESHOLD_MAX`` on 64 bits): a range's arrays stay below."""
_NEVER_TRIM = 2**31 - 1
"""The largest the (int) setting takes: 2 GB free at the heap's top before trimming."""
_DEFAULT_TRIM = 128 << 10
"""glibc's default ``M_TRIM_THRESHOLD``, put back on the way out."""
_NEVER_PURGE = -1
_ARROW_DECAY_MS = 1000
"""What Arrow configures jemalloc with, put back on the way out."""


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc's alone
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _jemalloc() -> pa.MemoryPool | None:
    try:
        pa.jemalloc_set_decay_ms(_NEVER_PURGE)  # for the arenas made from now on
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        return None


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[None]:
    """Keep freed memory for reuse while the block runs; give it back afterwards."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
    previous = pa.default_memory_pool()
    pool = _jemalloc()
    if pool is not None:
        pa.set_memory_pool(pool)
    try:
        yield
    finally:
        if pool is not None:
            pa.set_memory_pool(previous)
            pa.jemalloc_set_decay_ms(_ARROW_DECAY_MS)
            pool.release_unused()
        if libc is not None:
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
            libc.malloc_trim(0)
