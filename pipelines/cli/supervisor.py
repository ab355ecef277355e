"""The process supervisor of `annotator app`: the Streamlit server runs in its own process group,
and every stop signal this process gets reaches the whole group, so no server and no bound port
outlive the command.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def serve_until_stopped(server: subprocess.Popen, grace_s: float = 10.0) -> int:
    """Wait for the server (started with ``start_new_session=True``) and return its exit code.

    SIGTERM, SIGINT or SIGHUP to this process go to the server's group; a server still alive
    ``grace_s`` later is killed.
    """
    asked: list[float] = []

    def stop(signum, _frame):
        asked.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT,
                                                          signal.SIGHUP)}
    try:
        while True:
            try:
                return server.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > grace_s:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(server.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
