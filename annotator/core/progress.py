"""Progress reporting, one contract for every job: ``progress(done, total, message, stage=...)``.

The CLI shows a rich bar per stage; the background-job runner turns the calls into one
monotonic fraction with an ETA on the job's row (:class:`StagedProgress`). A job names its
stages (``"dataset"``, ``"train"``, a video's file name...) so both can tell them apart.
"""
from __future__ import annotations

import time
from typing import Mapping, Optional, Protocol


class ProgressFn(Protocol):
    """``data``: numbers a page may plot while the job runs (e.g. one epoch's losses)."""

    def __call__(self, done: int, total: Optional[int], message: str = "", *,
                 stage: str | None = None, data: dict | None = None) -> None: ...


def silent(done: int, total: Optional[int], message: str = "", *, stage: str | None = None,
           data: dict | None = None) -> None:
    """The default: jobs report nothing."""


def under(progress: ProgressFn, stage: str) -> ProgressFn:
    """``progress`` with every call put under ``stage``: a step of a larger job (``retrain``
    runs build-dataset, train and score under their own names)."""

    def call(done: int, total: Optional[int], message: str = "", *, data: dict | None = None,
             **_inner_stage) -> None:
        progress(done, total, message, stage=stage, data=data)

    return call


class StagedProgress:
    """One overall fraction in [0, 1] that never goes back, and an ETA, from per-stage calls.

    Parameters
    ----------
    weights : mapping stage -> share of the whole job, optional
        Declared stages in order (e.g. ``{"dataset": 0.1, "train": 0.8, "score": 0.1}``). A
        stage's start means every earlier declared stage is finished. Undeclared stages (a
        video's name in ``extract``) share the whole job equally among those seen so far.
    clock : callable returning seconds (tests pass a fake one)
    """

    def __init__(self, weights: Mapping[str, float] | None = None, *, clock=time.monotonic):
        total = sum((weights or {}).values())
        self.weights = {k: v / total for k, v in (weights or {}).items()} if total else {}
        self.order = list(self.weights)
        self.clock = clock
        self.t0 = clock()
        self.parts: dict[str, float] = {}
        self.fraction = 0.0
        self.stage: str | None = None  # the stage of the latest call, and when it began
        self.stage_t0 = self.t0

    def update(self, done: int, total: Optional[int], stage: str | None) -> float:
        """Record one progress call; returns the overall fraction."""
        stage = stage or "_"
        if stage != self.stage:
            self.stage, self.stage_t0 = stage, self.clock()
        part = min(1.0, max(0.0, done / total)) if total else 0.0
        self.parts[stage] = max(part, self.parts.get(stage, 0.0))
        if stage in self.weights:
            for earlier in self.order[: self.order.index(stage)]:
                self.parts[earlier] = 1.0
            overall = sum(w * self.parts.get(s, 0.0) for s, w in self.weights.items())
        else:
            free = [s for s in self.parts if s not in self.weights]
            left = 1.0 - sum(self.weights.values())
            share = (left if left > 0 else 1.0) / max(len(free), 1)
            overall = sum(w * self.parts.get(s, 0.0) for s, w in self.weights.items()) + sum(
                share * self.parts[s] for s in free)
        self.fraction = max(self.fraction, min(1.0, overall))
        return self.fraction

    def eta_s(self) -> float | None:
        """Seconds left, from measured pace: the current stage at its own pace (a fast first
        stage says nothing about training), the declared stages after it at the average pace so
        far. None before anything measurable happened, and while the stages not begun weigh
        more than the work done: a retrain's dataset, built in seconds, would promise 500 epochs
        in 10 s."""
        now = self.clock()
        elapsed = now - self.t0
        if self.fraction <= 0.01 or elapsed < 1.0:
            return None
        stage, part = self.stage, self.parts.get(self.stage or "_", 0.0)
        later = (sum(self.weights[s] for s in self.order[self.order.index(stage) + 1:])
                 if stage in self.weights else 0.0)
        if later > self.fraction:
            return None
        if stage not in self.weights or part <= 0.01 or now - self.stage_t0 < 1.0:
            return elapsed * (1.0 - self.fraction) / self.fraction
        stage_left = (now - self.stage_t0) * (1.0 - part) / part
        return stage_left + later * elapsed / self.fraction
