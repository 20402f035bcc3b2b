"""Pool processes ask the kernel for SIGKILL when their worker dies, without cffi's C parser.

Celery's pool initializer calls billiard's ``set_pdeathsig`` in every pool process. With cffi
installed (cryptography and curl_cffi need it), billiard declares ``prctl`` to cffi, and cffi
parses that one line of C with pycparser, whose lexer and parser tables cost each pool process
3 MB, once per process, for one system call (measured: 15 MB across prd's five). This makes
the same call with ctypes, which billiard uses when cffi is absent.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_pdeathsig(signum: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, signum)``: the kernel sends ``signum`` when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def install() -> None:
    """Make Celery's pool initializer call :func:`set_pdeathsig` (Linux; elsewhere Celery
    does nothing either)."""
    import celery.platforms

    if sys.platform.startswith("linux") and hasattr(celery.platforms, "_set_pdeathsig"):
        celery.platforms._set_pdeathsig = set_pdeathsig
