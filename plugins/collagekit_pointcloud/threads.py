"""One intra-op CPU thread for the small kernels of fitting and rendering.

Every kernel here is small (3x3 products, gathers of a few MB, distance blocks of a few M entries).
Splitting each across threads costs more in synchronisation than it gains: on the 2-core machine a
fit took 1.7 s on one thread and 5-11 s on two while another process kept the cores busy, and the chaos
game ran ~10x slower on two threads. Fitting and rendering therefore run on one thread, and restore
the caller's setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_cpu_thread(device: torch.device | str = "cpu") -> Iterator[None]:
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
