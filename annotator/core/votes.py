"""One label per tracked person: per-track votes over per-frame labels (pure, no I/O).

A classifier labels every face of every frame, and one person's label flickers between frames
(blur, a turned head, a hand in front). A vote turns a track's per-frame labels into the state a
site would show, frame by frame, using only the frames seen so far (so it works live):

``debounce``  the first decided label sets the state; afterwards it changes only after ``k``
              identical consecutive labels that differ from it (Neuralet's detector counted a
              label after 3: ``processing_count_threshold``).
``majority``  the most frequent label so far; a tie keeps the current state.

A frame whose top class probability is below ``min_prob`` is :data:`UNKNOWN`
(:func:`frame_labels`). Unknown frames are not votes: they neither start nor break a run, and
the state holds through them. A track with no decided frame yet has the state ``None`` (shown as
unknown). :func:`changes` counts how often a label sequence changes; flicker is changes per
second of track (:func:`flicker_rate`); :func:`uncertain` says why a track is worth a human's
look.

Examples
--------
>>> debounce(["m", "m", "n", "m", "m"], 3)
['m', 'm', 'm', 'm', 'm']
>>> debounce(["m", "n", "n", "n"], 3)
['m', 'm', 'm', 'n']
>>> majority(["n", "m", "m", "unknown"])
['n', 'n', 'm', 'm']
>>> frame_labels(np.array([[0.9, 0.1], [0.6, 0.4]]), ["mask", "no_mask"], min_prob=0.75)
['mask', 'unknown']
>>> changes(["m", "n", "m"]), changes([None, "m", "m"])
(2, 0)
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

__all__ = ["UNKNOWN", "METHODS", "parse_vote", "frame_labels", "Voter", "vote", "debounce",
           "majority", "changes", "flicker_rate", "uncertain"]

UNKNOWN = "unknown"
METHODS = ("debounce", "majority")
DEFAULT_K = 3


# --- public functions ---------------------------------------------------------------------------


def parse_vote(spec: str) -> tuple[str, int]:
    """``"debounce:3"`` -> ``("debounce", 3)``; ``"debounce"`` -> k = 3; ``"majority"`` -> k = 0.

    Raises
    ------
    ValueError
        For an unknown method or a k that is not an integer >= 1.
    """
    if not isinstance(spec, str):
        raise ValueError(f"vote must be a string like debounce:3 or majority, got {spec!r}")
    method, _, k = spec.strip().partition(":")
    if method not in METHODS:
        raise ValueError(f"unknown vote {spec!r}; expected debounce:K or majority")
    if method == "majority":
        if k:
            raise ValueError(f"majority takes no count, got {spec!r}")
        return method, 0
    if not k:
        return method, DEFAULT_K
    try:
        n = int(k)
    except ValueError:
        raise ValueError(f"debounce count must be an integer >= 1, got {k!r}") from None
    if n < 1:
        raise ValueError(f"debounce count must be an integer >= 1, got {n}")
    return method, n


def frame_labels(probs, classes: Sequence[str], *, min_prob: float) -> list[str]:
    """Per-frame labels: the most probable class, or :data:`UNKNOWN` below ``min_prob``.

    Parameters
    ----------
    probs : array-like, shape (N, K)
        Class probabilities, one row per face.
    classes : sequence of K class names (none of them :data:`UNKNOWN`).
    min_prob : float in [0, 1]
        A top probability below it makes the frame's label unknown (Neuralet used 0.75).

    Returns
    -------
    list of str, length N
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes) or len(classes) < 1:
        raise ValueError(f"probs must have shape (N, {len(classes)}), got {p.shape}")
    if UNKNOWN in classes:
        raise ValueError(f"{UNKNOWN!r} cannot be a class name")
    if not 0.0 <= float(min_prob) <= 1.0:
        raise ValueError(f"min_prob must be in [0, 1], got {min_prob}")
    return _frame_labels(p, list(classes), float(min_prob))


class Voter:
    """The online vote of one track: feed it each frame's label, read the state.

    Parameters
    ----------
    method : ``"debounce"`` or ``"majority"``.
    k : int >= 1
        Debounce: identical consecutive labels needed to change a decided state (ignored by
        majority).
    """

    def __init__(self, method: str = "debounce", k: int = DEFAULT_K):
        if method not in METHODS:
            raise ValueError(f"unknown vote method {method!r}; expected one of {', '.join(METHODS)}")
        if method == "debounce" and (not isinstance(k, (int, np.integer)) or k < 1):
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        self.method, self.k = method, int(k)
        self.state: str | None = None
        self._run_label: str | None = None
        self._run = 0
        self._counts: Counter = Counter()

    def add(self, label: str) -> str | None:
        """One frame's label (a class name or :data:`UNKNOWN`); returns the state after it."""
        if not isinstance(label, str):
            raise ValueError(f"labels must be strings, got {label!r}")
        if label != UNKNOWN:
            if self.method == "debounce":
                self._debounce(label)
            else:
                self._majority(label)
        return self.state

    def _debounce(self, label: str) -> None:
        if self.state is None:
            self.state = label
        if label == self._run_label:
            self._run += 1
        else:
            self._run_label, self._run = label, 1
        if label != self.state and self._run >= self.k:
            self.state = label

    def _majority(self, label: str) -> None:
        self._counts[label] += 1
        if self.state is None or self._counts[label] > self._counts[self.state]:
            self.state = label


def vote(labels: Sequence[str], method: str = "debounce", k: int = DEFAULT_K) -> list[str | None]:
    """The state after each frame of one track (see :class:`Voter`)."""
    voter = Voter(method, k)
    return [voter.add(label) for label in _check_labels(labels)]


def debounce(labels: Sequence[str], k: int = DEFAULT_K) -> list[str | None]:
    """:func:`vote` with ``method="debounce"``: a decided state changes after ``k`` identical
    consecutive labels; unknown frames are skipped."""
    return vote(labels, "debounce", k)


def majority(labels: Sequence[str]) -> list[str | None]:
    """:func:`vote` with ``method="majority"``: the most frequent label so far, ties keep the
    state; unknown frames are skipped."""
    return vote(labels, "majority")


def changes(labels: Sequence[str | None]) -> int:
    """How many times consecutive labels differ; ``None`` (undecided) is skipped, so a track's
    first decision is not a change. :data:`UNKNOWN` is a label like any other here."""
    seq = list(labels)
    if any(v is not None and not isinstance(v, str) for v in seq):
        raise ValueError("labels must be strings or None")
    return _changes(seq)


def flicker_rate(n_changes, seconds) -> float:
    """Label changes per second of track, pooled over tracks: ``sum(changes) / sum(seconds)``
    over the tracks that last longer than 0 s (a one-frame track cannot flicker).

    Parameters
    ----------
    n_changes, seconds : array-like, shape (T,)
        Per track: label changes and the time from its first to its last frame.

    Returns
    -------
    float
        0.0 when no track lasts longer than 0 s.
    """
    c = np.asarray(n_changes, dtype=np.float64).reshape(-1)
    s = np.asarray(seconds, dtype=np.float64).reshape(-1)
    if c.shape != s.shape:
        raise ValueError(f"n_changes and seconds must have the same length, got {c.shape}, {s.shape}")
    if (c < 0).any() or (s < 0).any() or not np.isfinite(s).all():
        raise ValueError("n_changes and seconds must be finite and >= 0")
    return _pooled(c, s)


def uncertain(probs, state: str | None, flicker: float, *, max_flicker: float = 0.5,
              margin: float = 0.2) -> str | None:
    """Why a track is worth a human's look, or None when it is not.

    Parameters
    ----------
    probs : array-like, shape (N, K)
        The track's per-frame class probabilities.
    state : str or None
        Its voted state at its last frame (None or :data:`UNKNOWN`: never decided).
    flicker : float
        Its per-frame label changes per second.
    max_flicker : float >= 0
        More changes per second than this is ``"flicker"``.
    margin : float in [0, 0.5]
        Mean probabilities whose top two classes are closer than ``2 * margin`` (two classes:
        the mean probability within ``margin`` of 0.5) are ``"near_0.5"``.

    Returns
    -------
    ``"unknown"``, ``"flicker"``, ``"near_0.5"`` (first that applies) or None.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K) with N >= 1, K >= 2, got {p.shape}")
    if max_flicker < 0 or not 0.0 <= margin <= 0.5:
        raise ValueError("need max_flicker >= 0 and 0 <= margin <= 0.5")
    if flicker < 0:
        raise ValueError(f"flicker must be >= 0, got {flicker}")
    return _uncertain(p, state, float(flicker), float(max_flicker), float(margin))


# --- computation (inputs already validated) -----------------------------------------------------


def _frame_labels(p: np.ndarray, classes: list[str], min_prob: float) -> list[str]:
    if p.shape[0] == 0:
        return []
    top = p.argmax(axis=1)
    sure = p[np.arange(len(p)), top] >= min_prob
    return [classes[t] if ok else UNKNOWN for t, ok in zip(top.tolist(), sure.tolist())]


def _check_labels(labels) -> list[str]:
    seq = list(labels)
    if any(not isinstance(v, str) for v in seq):
        raise ValueError("labels must be strings (class names or 'unknown')")
    return seq


def _changes(seq: list) -> int:
    decided = [v for v in seq if v is not None]
    return sum(1 for a, b in zip(decided, decided[1:]) if a != b)


def _pooled(c: np.ndarray, s: np.ndarray) -> float:
    keep = s > 0
    total = float(s[keep].sum())
    return float(c[keep].sum()) / total if total > 0 else 0.0


def _uncertain(p, state, flicker, max_flicker, margin) -> str | None:
    if state is None or state == UNKNOWN:
        return "unknown"
    if flicker > max_flicker:
        return "flicker"
    mean = p.mean(axis=0)
    top2 = np.sort(mean)[-2:]
    if top2[1] - top2[0] < 2 * margin:
        return "near_0.5"
    return None
