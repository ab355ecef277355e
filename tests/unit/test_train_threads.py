"""The training thread policy: every core on a quiet machine, one beside other work."""
from __future__ import annotations

import os

from models.training import train_threads


def test_one_thread_beside_other_work_every_core_when_quiet():
    cores = len(os.sched_getaffinity(0))
    assert train_threads(busy=True) == 1
    assert train_threads(busy=False) == cores
    assert train_threads() in (1, cores)  # from the load average now
