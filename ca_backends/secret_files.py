"""Handing key material to OpenSSL, which only loads certificates and keys from paths, without
leaving it on disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def private_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can read ``data`` from, gone when the block ends.

    Prefers an anonymous in-memory file (``memfd_create``, Linux) read through ``/proc/self/fd``;
    otherwise a 0600 file in a fresh 0700 directory, removed right after use.
    """
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        try:
            fd = memfd_create("ca-client-credentials", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                os.write(fd, data)
                yield f"/proc/self/fd/{fd}"
                return
            finally:
                os.close(fd)
    directory = tempfile.mkdtemp(prefix="ca-mtls-")  # mode 0700
    path = os.path.join(directory, "client.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
