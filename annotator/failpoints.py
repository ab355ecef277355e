"""Named places where a test may crash the process on purpose (``kill -9`` at an exact point).

``ANNOTATOR_FAILPOINT=after_activate annotator models promote v2`` dies with SIGKILL right after
the activation commit, so a test can check what a crash there leaves behind. Unset (always, in
normal use) every failpoint is a no-op: one dictionary lookup.
"""
from __future__ import annotations

import os
import signal

ENV = "ANNOTATOR_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
