"""The C heap under the Python client: a bounded malloc arena count, set when libdatago.so loads.

glibc gives each thread that allocates an arena of its own (up to 8 per core); freed memory stays
in them, so a process of many decoding threads settles hundreds of MB above what is live. The
library sets ``mallopt(M_ARENA_MAX, 2)`` in a constructor when it is loaded, unless the user chose:
``MALLOC_ARENA_MAX`` (or ``GLIBC_TUNABLES=glibc.malloc.arena_max=...``), or
``DATAGO_MALLOC_ARENA_MAX`` (``0`` keeps glibc's default). Each case runs in a fresh interpreter:
many threads allocate at once, then the arenas are counted with ``malloc_info``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Loads the library (or not), makes THREADS threads allocate from the C heap while all are alive,
# and prints the number of malloc arenas (<heap nr=...> elements of malloc_info).
CHILD = r"""
import ctypes, os, sys, tempfile, threading
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "load":
    import datago._lib
    datago._lib.lib()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
THREADS = 16
barrier = threading.Barrier(THREADS + 1)
def work():
    libc.free(libc.malloc(64))  # the thread's first malloc attaches it to an arena
    barrier.wait()  # every thread alive at once: none hands its arena on
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(THREADS)]
for t in threads:
    t.start()
barrier.wait()
fd, path = tempfile.mkstemp()
os.close(fd)
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
barrier.wait()
for t in threads:
    t.join()
text = open(path).read()
os.unlink(path)
print(text.count("<heap nr="))
"""


def arenas(load: bool, **env: str) -> int:
    """Malloc arenas of a fresh interpreter after 16 threads allocated (the library loaded first or not)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "DATAGO_MALLOC_ARENA_MAX")
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "python"), "load" if load else "no"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


def test_library_load_bounds_the_arenas() -> None:
    assert arenas(load=False) > 2  # glibc's default: the threads get arenas of their own
    assert 1 <= arenas(load=True) <= 2


def test_users_arena_setting_is_honoured() -> None:
    assert arenas(load=True, MALLOC_ARENA_MAX="6") > 2  # glibc applies the user's 6; we do not lower it
    assert arenas(load=True, MALLOC_ARENA_MAX="6") <= 6
    assert arenas(load=True, GLIBC_TUNABLES="glibc.malloc.arena_max=5") > 2
    assert arenas(load=True, DATAGO_MALLOC_ARENA_MAX="0") > 2  # opt out: glibc's default
    assert 1 <= arenas(load=True, DATAGO_MALLOC_ARENA_MAX="3") <= 3
