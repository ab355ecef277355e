"""Progress reporting shared by jobs: the CLI shows a rich bar, the UI writes to the jobs table."""
from __future__ import annotations

from typing import Callable, Optional, Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: Optional[int], message: str = "") -> None: ...


def silent(done: int, total: Optional[int], message: str = "") -> None:
    """The default: jobs report nothing."""


ProgressFn = Optional[Callable[[int, Optional[int], str], None]]
