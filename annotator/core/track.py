"""Associate head boxes across sampled frames, and thin each track to a few good crops.

Pure NumPy: boxes and times in, track ids and indices out. ``Tracker.update(boxes, t)`` gives a
track id per box and the ids of tracks that just ended (unseen for longer than ``max_gap_s``);
``thin(times, quality, k)`` picks which of a track's crops to keep. The tracker's state is a
plain dict (``state()`` / ``Tracker.from_state``) so an interrupted extraction resumes exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tracker", "thin", "compact", "crop_quality"]


@dataclass
class _Track:
    id: int
    box: tuple[float, float, float, float]
    t: float  # time last seen, seconds


class Tracker:
    """Greedy centroid tracker for head boxes.

    A box joins the nearest live track when their centres are closer than
    ``max_distance + speed * dt`` head sizes (``dt`` = seconds since the track was last seen) and
    their sizes differ by less than ``max_size_ratio``; otherwise it starts a new track.

    Parameters
    ----------
    max_distance : float
        Allowed centre distance at ``dt = 0``, in units of the mean box side of the pair.
    speed : float
        Allowed extra distance per second of gap, in box sides. Tuned on the shared
        pedestrian video at 2 fps: 3.0 merged neighbours walking side by side, 1.5 did not.
    max_size_ratio : float
        Larger over smaller box side above which two boxes are never the same head.
    max_gap_s : float
        A track unseen for longer than this has ended.
    first_id : int
        The first track id to hand out (a source continued by a later run goes on after the
        ids it already has, so two people never share one).
    """

    def __init__(self, *, max_distance: float = 0.8, speed: float = 1.5,
                 max_size_ratio: float = 1.5, max_gap_s: float = 1.5, first_id: int = 1):
        if max_distance <= 0:
            raise ValueError(f"max_distance must be > 0, got {max_distance}")
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if max_size_ratio < 1:
            raise ValueError(f"max_size_ratio must be >= 1, got {max_size_ratio}")
        if max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be > 0, got {max_gap_s}")
        self.max_distance = max_distance
        self.speed = speed
        self.max_size_ratio = max_size_ratio
        self.max_gap_s = max_gap_s
        if first_id < 1:
            raise ValueError(f"first_id must be >= 1, got {first_id}")
        self._tracks: list[_Track] = []
        self._next_id = int(first_id)

    @property
    def live_ids(self) -> list[int]:
        return [tr.id for tr in self._tracks]

    def update(self, boxes: np.ndarray, t: float) -> tuple[np.ndarray, list[int]]:
        """Assign track ids to the boxes of one frame.

        Parameters
        ----------
        boxes : ndarray (N, 4)
            ``x1, y1, x2, y2`` per head, in pixels.
        t : float
            The frame's time in seconds (non-decreasing between calls).

        Returns
        -------
        ids : ndarray (N,) of int
        ended : list of int
            Tracks unseen for longer than ``max_gap_s`` at time ``t``; they never come back.
        """
        b = np.asarray(boxes, dtype=float).reshape(-1, 4)
        ids = np.zeros(len(b), dtype=int)
        live = [tr for tr in self._tracks if t - tr.t <= self.max_gap_s]
        ended = [tr.id for tr in self._tracks if t - tr.t > self.max_gap_s]
        pairs = self._candidates(b, live, t)
        used_box, used_track = set(), set()
        for _cost, i, j in pairs:  # greedy: cheapest pairs first
            if i in used_box or j in used_track:
                continue
            used_box.add(i)
            used_track.add(j)
            ids[i] = live[j].id
            live[j].box, live[j].t = tuple(b[i]), t
        for i in range(len(b)):
            if i not in used_box:
                tr = _Track(self._next_id, tuple(b[i]), t)
                self._next_id += 1
                live.append(tr)
                ids[i] = tr.id
        self._tracks = live
        return ids, ended

    def finish(self) -> list[int]:
        """End every live track (end of the source); returns their ids."""
        ended = [tr.id for tr in self._tracks]
        self._tracks = []
        return ended

    def state(self) -> dict:
        """JSON-ready state: restore it with :meth:`from_state`."""
        return {
            "params": [self.max_distance, self.speed, self.max_size_ratio, self.max_gap_s],
            "next_id": self._next_id,
            "tracks": [[tr.id, list(tr.box), tr.t] for tr in self._tracks],
        }

    @classmethod
    def from_state(cls, state: dict) -> "Tracker":
        md, sp, ratio, gap = state["params"]
        tracker = cls(max_distance=md, speed=sp, max_size_ratio=ratio, max_gap_s=gap)
        tracker._next_id = int(state["next_id"])
        tracker._tracks = [_Track(int(i), tuple(box), float(t)) for i, box, t in state["tracks"]]
        return tracker

    def _candidates(self, b, live, t):
        if not len(b) or not live:
            return []
        tb = np.array([tr.box for tr in live], dtype=float)
        dt = np.array([t - tr.t for tr in live], dtype=float)
        side_b = np.maximum((b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2, 1e-6)
        side_t = np.maximum((tb[:, 2] - tb[:, 0] + tb[:, 3] - tb[:, 1]) / 2, 1e-6)
        cb = (b[:, :2] + b[:, 2:]) / 2
        ct = (tb[:, :2] + tb[:, 2:]) / 2
        dist = np.linalg.norm(cb[:, None, :] - ct[None, :, :], axis=2)
        mean_side = (side_b[:, None] + side_t[None, :]) / 2
        cost = dist / mean_side
        ratio = np.maximum(side_b[:, None], side_t[None, :]) / np.minimum(side_b[:, None], side_t[None, :])
        ok = (cost <= self.max_distance + self.speed * dt[None, :]) & (ratio <= self.max_size_ratio)
        ii, jj = np.nonzero(ok)
        return sorted(zip(cost[ii, jj].tolist(), ii.tolist(), jj.tolist()))


def crop_quality(side: np.ndarray, sharpness: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Higher is better: detector score x crop side x sqrt(1 + Laplacian variance). Shapes (N,)."""
    side, sharpness, score = (np.asarray(a, dtype=float) for a in (side, sharpness, score))
    return np.clip(score, 1e-3, None) * side * np.sqrt(1.0 + np.clip(sharpness, 0, None))


def thin(times: np.ndarray, quality: np.ndarray, k: int) -> np.ndarray:
    """Indices of at most ``k`` items of one track: the best, spread in time.

    The track's time span is cut into ``k`` equal parts and the best item of each part is kept;
    parts with no item leave their place to the best items not yet kept.

    Parameters
    ----------
    times : ndarray (N,) seconds
    quality : ndarray (N,) higher is better
    k : int >= 1

    Returns
    -------
    ndarray (M,) of int, M = min(N, k), sorted by time.
    """
    times, quality = np.asarray(times, dtype=float), np.asarray(quality, dtype=float)
    if times.shape != quality.shape or times.ndim != 1:
        raise ValueError("times and quality must be 1-d arrays of the same length")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = len(times)
    if n <= k:
        return np.argsort(times, kind="stable")
    span = times.max() - times.min()
    part = np.zeros(n, dtype=int) if span <= 0 else np.minimum(
        ((times - times.min()) / span * k).astype(int), k - 1)
    keep = []
    for p in range(k):
        members = np.nonzero(part == p)[0]
        if len(members):
            keep.append(int(members[np.argmax(quality[members])]))
    if len(keep) < k:
        rest = [int(i) for i in np.argsort(-quality, kind="stable") if int(i) not in keep]
        keep += rest[: k - len(keep)]
    keep = np.array(keep, dtype=int)
    return keep[np.argsort(times[keep], kind="stable")]


def compact(times: np.ndarray, quality: np.ndarray, cap: int) -> np.ndarray:
    """Indices to keep so that at most ``cap`` items remain (bounds memory on long tracks).

    Repeatedly drops the worse of the two items closest in time, so what stays is still spread
    over the track and good. Returns sorted indices.
    """
    times, quality = np.asarray(times, dtype=float), np.asarray(quality, dtype=float)
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    order = list(np.argsort(times, kind="stable"))
    while len(order) > cap:
        t = times[order]
        gap = int(np.argmin(np.diff(t)))
        a, b = order[gap], order[gap + 1]
        order.remove(a if quality[a] < quality[b] else b)
    return np.array(sorted(int(i) for i in order), dtype=int)
