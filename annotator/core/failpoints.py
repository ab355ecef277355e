"""Named places where a test may crash the process on purpose (``kill -9`` at an exact point).

``ANNOTATOR_FAILPOINT=after_activate annotator models promote v2`` dies with SIGKILL right after
the activation commit, so a test can check what a crash there leaves behind. Unset (always, in
normal use) every failpoint is a no-op: one dictionary lookup.

``ANNOTATOR_FAILPOINT_ONCE=FILE`` as well: it fires only in the first process to get there (the
one that creates FILE), so a task that a scheduler retries after the crash then succeeds.
"""
from __future__ import annotations

import os
import signal

ENV = "ANNOTATOR_FAILPOINT"
ONCE = "ANNOTATOR_FAILPOINT_ONCE"


def failpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        once = os.environ.get(ONCE)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
