"""The cyclic garbage collector, tuned for a long-running process that has finished starting.

``serve`` and the simulator's fleet both allocate thousands of container objects per device
journey. With CPython's default threshold (700) a collection ran every few datagrams, and each one
walked everything the process had set up (modules, caches, the CA, the simulator's certificate
cache and key pool) again. Measured: the server's collection time fell from about 3.5% of its CPU
to about 1.3%; the simulator's from 0.13-0.19 to 0.02-0.03 ms per device journey (2,000 devices,
three rounds each way), about 7% of its CPU.
"""

from __future__ import annotations

import gc


def settle_garbage_collector() -> None:
    """Freeze what exists now (it lives as long as the process, so later collections need not
    scan it) and collect less often. Call once set-up is done; calling it again is harmless."""
    gc.freeze()
    gc.set_threshold(5000, 20, 20)
