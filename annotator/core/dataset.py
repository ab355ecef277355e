"""Train / validation split logic (pure NumPy): grouped, stratified and sticky across versions.

Groups keep near-identical pictures on one side: crops of one person (same source and track),
byte-identical images (same sha256) and near-duplicates (difference hashes a few bits apart)
are joined transitively. The split then assigns whole groups, class-stratified, and keeps every
crop that an earlier dataset version placed where it was: a validation crop stays in
validation (versions stay comparable) and a training crop stays in training (a model trained
on an earlier version never meets its own training crops in a later validation set).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["dhash", "near_duplicate_pairs", "group_ids", "assign_split", "TRAIN", "VAL"]

TRAIN, VAL = "train", "val"


def dhash(gray: np.ndarray) -> np.ndarray:
    """64-bit difference hashes of grayscale thumbnails.

    Parameters
    ----------
    gray : array (N, 8, 9)
        Images already shrunk to 8 rows by 9 columns (area interpolation).

    Returns
    -------
    hashes : uint64 (N,)
        Bit ``8*r + c`` is set when pixel (r, c+1) is brighter than pixel (r, c).
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 3 or gray.shape[1:] != (8, 9):
        raise ValueError(f"gray must be (N, 8, 9), got {gray.shape}")
    bits = (gray[:, :, 1:] > gray[:, :, :-1]).reshape(len(gray), 64).astype(np.uint64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def near_duplicate_pairs(hashes: np.ndarray, *, max_distance: int = 4) -> np.ndarray:
    """Index pairs ``(M, 2)`` whose hashes differ in at most ``max_distance`` bits.

    Pigeonhole blocking: split the 64 bits into ``max_distance + 1`` bands; two hashes within the
    distance agree exactly on at least one band, so only crops sharing a band value are compared.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = hashes.size
    if n < 2 or max_distance < 0:
        return np.empty((0, 2), dtype=np.int64)
    bands = max_distance + 1
    bounds = np.linspace(0, 64, bands + 1).astype(int)
    found = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = np.uint64((1 << (hi - lo)) - 1)
        key = (hashes >> np.uint64(lo)) & mask
        order = np.argsort(key, kind="stable")
        k = key[order]
        starts = np.r_[0, np.flatnonzero(np.diff(k)) + 1]
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            idx = order[s:e]
            h = hashes[idx]
            dist = np.bitwise_count(h[:, None] ^ h[None, :])
            i, j = np.nonzero(np.triu(dist <= max_distance, k=1))
            if i.size:
                found.append(np.stack([idx[i], idx[j]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def group_ids(
    source: Sequence,
    track: Sequence,
    sha256: Sequence,
    *,
    hashes: np.ndarray | None = None,
    max_distance: int = 4,
    by: str = "track",
) -> np.ndarray:
    """Connected groups ``(N,)`` (int, 0..G-1) of crops that must share a side.

    Parameters
    ----------
    source, track, sha256 : sequences (N,)
        Source key, track id (None / NaN when the crop has no track) and content hash.
    hashes : uint64 (N,), optional
        Difference hashes; crops within ``max_distance`` bits are joined.
    by : "track" or "source"
        ``track`` joins crops of one (source, track); ``source`` joins whole sources (videos).
    """
    if by not in ("track", "source"):
        raise ValueError(f"by must be 'track' or 'source', got {by!r}")
    n = len(sha256)
    if not (len(source) == len(track) == n):
        raise ValueError("source, track and sha256 must have the same length")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    keys: list[list] = [[f"h:{h}" for h in sha256]]
    if by == "source":
        keys.append([f"s:{s}" for s in source])
    else:
        keys.append([None if _missing(t) else f"t:{s}/{int(t)}" for s, t in zip(source, track)])
    rows, cols = [], []
    for key_list in keys:
        first: dict = {}
        for i, k in enumerate(key_list):
            if k is None:
                continue
            j = first.setdefault(k, i)
            if j != i:
                rows.append(i)
                cols.append(j)
    if hashes is not None:
        pairs = near_duplicate_pairs(hashes, max_distance=max_distance)
        rows.extend(pairs[:, 0].tolist())
        cols.extend(pairs[:, 1].tolist())
    return _components(n, rows, cols)


def _components(n: int, rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
    """Connected components of an undirected graph given as edge lists (union-find).

    Components are numbered by their smallest member, in order: the numbering of a breadth-first
    labelling from node 0, so group ids do not depend on the order of the edges.
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    for a, b in zip(rows, cols):
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smaller index stays the root
    roots = np.array([root(i) for i in range(n)], dtype=np.int64)
    _, labels = np.unique(roots, return_inverse=True)  # roots are the smallest members
    return labels.astype(np.int64)


def assign_split(
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    val_fraction: float,
    seed: int = 0,
    previous: Sequence | None = None,
    prefer_val: np.ndarray | None = None,
) -> np.ndarray:
    """Which crops go to validation: a boolean ``(N,)``.

    Whole groups are assigned. Groups holding a crop that ``previous`` placed in validation go
    to validation; groups holding a crop previously in training (and none in validation) stay
    in training; the other groups are taken in a seeded random order, those holding a
    ``prefer_val`` crop first (the auto-label audit's random-share crops: a model should not
    learn the crops that audit it), and put in validation whenever that brings every class's
    validation count closer to ``val_fraction`` of it.

    Parameters
    ----------
    labels : int (N,)
        Class index per crop.
    groups : int (N,)
        Group id per crop (``group_ids``).
    previous : sequence (N,) of "train", "val" or None, optional
        Where an earlier dataset version put each crop.
    """
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(groups, dtype=np.int64)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError("labels and groups must be 1-D arrays of the same length")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = labels.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    prev = np.array([p if p in (TRAIN, VAL) else "" for p in previous], dtype=object) \
        if previous is not None else np.full(n, "", dtype=object)
    if prev.shape != labels.shape:
        raise ValueError("previous must have one entry per crop")
    _, g = np.unique(groups, return_inverse=True)
    n_groups, k = int(g.max()) + 1, int(labels.max()) + 1
    counts = np.zeros((n_groups, k), dtype=np.int64)
    np.add.at(counts, (g, labels), 1)
    was_val = np.bincount(g, weights=(prev == VAL), minlength=n_groups) > 0
    was_train = np.bincount(g, weights=(prev == TRAIN), minlength=n_groups) > 0
    in_val = was_val.copy()
    preferred = np.zeros(n_groups, dtype=bool)
    if prefer_val is not None:
        prefer = np.asarray(prefer_val, dtype=bool)
        if prefer.shape != labels.shape:
            raise ValueError("prefer_val must have one entry per crop")
        preferred = np.bincount(g, weights=prefer, minlength=n_groups) > 0
    target = val_fraction * counts.sum(axis=0)
    have = counts[in_val].sum(axis=0).astype(np.float64)
    rng = np.random.default_rng(seed)
    free = np.flatnonzero(~was_val & ~was_train)
    order = free[rng.permutation(free.size)]
    # Preferred groups are offered first, so validation fills with them up to val_fraction
    # (all of a 10% random share; a fifth of a workspace whose every label is random).
    order = np.concatenate([order[preferred[order]], order[~preferred[order]]])
    for gi in order:
        after = have + counts[gi]
        if ((after - target) ** 2).sum() < ((have - target) ** 2).sum():
            in_val[gi] = True
            have = after
    return in_val[g]


def _missing(x) -> bool:
    """None, NaN and pandas' NA all mean "no track"."""
    if x is None:
        return True
    try:
        return bool(np.isnan(float(x)))
    except (TypeError, ValueError):
        return True
