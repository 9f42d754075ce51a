"""The C library's allocator, set as CPU training wants it: freed buffers kept for reuse."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters, and the largest mmap threshold it accepts on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 2**20
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Keep freed buffers in the heap for the next step instead of returning them to the OS.
    A CPU training step frees and reallocates activation-sized buffers; glibc serves those
    from fresh mmaps, and trims its heap's top, so every step pays page faults to zero them
    again (``fill_`` tops CPU profiles of small CNNs). False where the C library has no
    mallopt (macOS, Windows) or refuses the values (musl): nothing changes there."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
