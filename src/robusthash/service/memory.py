"""How the server's process hands memory back (the memory budget, docs/service.md)."""

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def keep_large_blocks_mapped(threshold: int = 1 << 20) -> bool:
    """Make glibc's malloc serve every block above ``threshold`` bytes by its own mmap,
    unmapped when freed; whether it could (glibc only).

    By default glibc raises that threshold to the size of each large block freed (up to
    32 MB): after the first big upload, a decode's and pdq's transient buffers come from
    the heap instead, and the pages they leave stay in the process, so one 49-megapixel
    query raised the server's peak by 280-303 MB here. With the threshold fixed, 259 MB,
    the same every time (tests/test_service.py)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
