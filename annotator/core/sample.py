"""Which crops to label next: pure functions over arrays (no database, no files).

The labeling app, the retraining job and the simulator all call :func:`select_batch` with arrays
exported from the database and get back row indices plus the reason each row was picked; the
caller maps indices back to crop ids and records the reason with the label (``Label.sampling``).

Strategies
----------
``uncertainty``  the least confident rows first (``1 - margin`` of the class probabilities).
``random``       uniform over the rows (an unbiased sample of the queue).
``diverse``      k-center greedy on embeddings, at most one row per group.
``hybrid``       the ``pool`` most uncertain rows, then a k-center diverse batch among them, at most
                 one row per group (track) per batch. The default.
``slices``       ``slice_share`` of the batch from the rows of the worst slices (``slice_score``:
                 how bad the row's worst slice is, see ``annotator.core.slices.row_scores``), most
                 uncertain first and k-center diverse among them; the rest as ``hybrid``.

Every strategy except ``random`` gives ``random_share`` of the batch to uniformly random rows,
recorded with the reason ``"random"`` so the model's accuracy on the queue can be estimated
without bias. Without ``probs`` (no model yet) ``uncertainty`` and ``hybrid`` fall back to a cold
start: diverse picks (reason ``"cold_start"``) plus the random share.

Junk last: rows marked ``last`` (crops that are likely not a face, :func:`likely_junk`, learned
from the team's own ``not_a_face`` decisions) are left out of the non-random picks while other
rows remain; the random share still draws from every row, so its estimate stays unbiased.

Examples
--------
>>> probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
>>> uncertainty(probs)
array([1. , 0.2, 0.8])
>>> select_batch("uncertainty", 2, probs=probs, random_share=0.0)
[(0, 'uncertainty'), (2, 'uncertainty')]
"""
from __future__ import annotations

import numpy as np

__all__ = ["STRATEGIES", "uncertainty", "k_center_greedy", "likely_junk", "select_batch"]

STRATEGIES = ("hybrid", "uncertainty", "diverse", "random", "slices")
RANDOM, UNCERTAINTY, DIVERSE, HYBRID, COLD_START = (
    "random", "uncertainty", "diverse", "hybrid", "cold_start"
)
SLICES = "slices"


# --- public functions ---------------------------------------------------------------------------


def uncertainty(probs) -> np.ndarray:
    """How unsure the model is about each row, in [0, 1] (1 = a coin toss).

    Parameters
    ----------
    probs : array-like, shape (N, K), K >= 2
        Class probabilities; rows should sum to 1.

    Returns
    -------
    np.ndarray, shape (N,)
        ``1 - (p_top1 - p_top2)``. For two classes this is ``1 - |p0 - p1|``, which ranks exactly
        like least-confidence and entropy; for more classes it is the margin score.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K) with K >= 2, got {p.shape}")
    if p.shape[0] == 0:
        return np.zeros(0)
    return _margin_uncertainty(p)


def k_center_greedy(emb, k: int, *, seed: int = 0) -> np.ndarray:
    """Pick ``k`` rows that cover the embedding space: each pick is the row farthest from all
    earlier picks (the core-set greedy of Sener & Savarese 2018).

    Parameters
    ----------
    emb : array-like, shape (N, D)
        One embedding per row (e.g. the classifier's penultimate layer).
    k : int
        How many rows to pick; ``min(k, N)`` are returned.
    seed : int, keyword-only
        Picks the first row at random; the rest follows deterministically.

    Returns
    -------
    np.ndarray of int64, shape (min(k, N),)
        Row indices in the order they were picked; no repeats.
    """
    x = _check_emb(emb)
    _check_k(k)
    if x.shape[0] == 0 or k == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(np.random.default_rng(seed).integers(x.shape[0]))
    return _k_center(x, k, first=first, groups=None)


def likely_junk(scores, decided_scores, decided_face, *, min_each: int = 10) -> np.ndarray:
    """Which rows are likely not a face, judged by the detector score as the team's own
    decisions read it: a logistic fit of "face" (a class was given) against "not a face" (the
    ``x`` key) on the decided crops' scores, classes weighted alike, and a row is junk where the
    fit says face is less likely than not.

    Why the detector score alone: on the five shared videos' crops it separates the team's
    ``x`` crops (backs of heads, hair) from faces with an AUC of 0.90 under 5-fold cross
    validation, and adding the crop's size or sharpness did not help (0.90 / 0.85). It is fitted
    per detector by the caller, since each detector scores on its own scale.

    Parameters
    ----------
    scores : array-like of float, shape (N,)
        Detector score of each row; NaN (no score, e.g. an imported crop) is never junk.
    decided_scores, decided_face : array-like, shape (M,)
        Scores of crops people decided, and whether the decision was a class (True) or
        ``not_a_face`` (False).
    min_each : int
        Decisions of each kind needed before anything is called junk (no evidence, no demotion).

    Returns
    -------
    np.ndarray of bool, shape (N,)
        All False when the evidence is short or says a higher score is not more face-like.

    Examples
    --------
    >>> decided = [0.3, 0.35, 0.4, 0.45, 0.8, 0.85, 0.9, 0.95]
    >>> likely_junk([0.2, 0.7, 0.9, float("nan")], decided, [0, 0, 0, 0, 1, 1, 1, 1], min_each=4)
    array([ True, False, False, False])
    >>> likely_junk([0.2], decided, [0, 0, 0, 0, 1, 1, 1, 1], min_each=5)  # too few decisions
    array([False])
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ds = np.asarray(decided_scores, dtype=np.float64).reshape(-1)
    face = np.asarray(decided_face, dtype=bool).reshape(-1)
    if ds.shape != face.shape:
        raise ValueError(f"decided_scores and decided_face differ in length: {ds.size}, {face.size}")
    known = np.isfinite(ds)
    ds, face = ds[known], face[known]
    out = np.zeros(s.size, bool)
    if min(int(face.sum()), int((~face).sum())) < max(1, int(min_each)):
        return out
    mu, sd = ds.mean(), max(float(ds.std()), 1e-9)
    b0, b1 = _balanced_logistic((ds - mu) / sd, face)
    if b1 <= 0:  # higher scores are not more face-like here: nothing to learn
        return out
    ok = np.isfinite(s)
    out[ok] = b0 + b1 * (s[ok] - mu) / sd < 0  # P(face) < 1/2
    return out


def select_batch(
    strategy: str,
    k: int,
    *,
    probs=None,
    emb=None,
    groups=None,
    n: int | None = None,
    random_share: float = 0.1,
    random_pool=None,
    main_pool=None,
    pool: int = 3000,
    seed: int = 0,
    slice_score=None,
    slice_share: float = 0.5,
    last=None,
) -> list[tuple[int, str]]:
    """The next batch to label: ``(row index, reason)`` pairs, at most ``k`` of them.

    Parameters
    ----------
    strategy : {"hybrid", "uncertainty", "diverse", "random"}
    k : int
        Batch size. Fewer rows come back when the rows (or, for ``hybrid``/``diverse``, the
        groups) run out.
    probs : array-like, shape (N, K), optional
        Active model's class probabilities. None means no model yet: cold start.
    emb : array-like, shape (N, D), optional
        Embeddings for ``diverse``/``hybrid``. Without them diversity comes from ``groups`` only
        (one row per group, groups in random order).
    groups : array-like of int, shape (N,), optional
        Group of each row (a track: consecutive frames of one person). ``hybrid``, ``diverse``
        and the cold start return at most one row per group per batch, the random share
        included. Negative values mean "no group" (the row is its own group).
    n : int, optional
        Number of rows when no array is given (``random`` over ``n`` rows).
    random_share : float in [0, 1]
        Share of the batch drawn uniformly at random (reason ``"random"``); rounded to the
        nearest count. Ignored by ``random`` (all of it is random).
    random_pool : array-like of bool, shape (N,), optional
        Rows eligible for the random share. Default: all rows. A caller that passes only the
        top of a large queue plus a uniform sample of it marks the sample here, so the random
        share stays an unbiased sample of the whole queue.
    main_pool : array-like of bool, shape (N,), optional
        Rows eligible for the non-random picks. Default: all rows. E.g. only the rows the
        model has scored (unscored rows then carry placeholder probs/embeddings).
    pool : int
        ``hybrid``: how many of the most uncertain rows the diverse batch is picked from.
    seed : int
        Makes the draw reproducible.
    slice_score : array-like of float, shape (N,), optional
        ``slices``: how bad each row's worst slice is (0 = in no slice worth targeting). Without
        it ``slices`` is ``hybrid``.
    slice_share : float in [0, 1]
        ``slices``: share of the non-random picks spent on the worst slices.
    last : array-like of bool, shape (N,), optional
        Rows the non-random picks take only when the other rows of ``main_pool`` run out (likely
        junk, :func:`likely_junk`). The random share ignores it.

    Returns
    -------
    list of (int, str)
        Row indices (into the arrays given) with the reason each was picked: ``"uncertainty"``,
        ``"hybrid"``, ``"diverse"``, ``"cold_start"``, ``"slices"`` or ``"random"``. No index
        repeats.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    _check_k(k)
    if not 0.0 <= float(random_share) <= 1.0:
        raise ValueError(f"random_share must be in [0, 1], got {random_share}")
    if pool < 1:
        raise ValueError(f"pool must be at least 1, got {pool}")
    if not 0.0 <= float(slice_share) <= 1.0:
        raise ValueError(f"slice_share must be in [0, 1], got {slice_share}")
    p = None if probs is None else np.asarray(probs, dtype=np.float64)
    if p is not None and (p.ndim != 2 or p.shape[1] < 2):
        raise ValueError(f"probs must have shape (N, K) with K >= 2, got {p.shape}")
    x = None if emb is None else _check_emb(emb)
    size = _common_length(n=n, probs=p, emb=x, groups=groups, random_pool=random_pool,
                          main_pool=main_pool, slice_score=slice_score, last=last)
    g = _group_ids(groups, size)
    eligible = np.ones(size, bool) if random_pool is None else np.asarray(random_pool, bool)
    rng = np.random.default_rng(seed)
    if strategy == RANDOM:
        return [(int(i), RANDOM) for i in _random_rows(rng, eligible, k, used=None, groups=None)]
    if strategy in (UNCERTAINTY, HYBRID, SLICES) and p is None:
        strategy = COLD_START
    n_random = min(k, int(np.floor(k * float(random_share) + 0.5)))
    n_main = k - n_random
    one_per_group = strategy != UNCERTAINTY
    in_main = np.ones(size, bool) if main_pool is None else np.asarray(main_pool, bool)
    junk = np.zeros(size, bool) if last is None else np.asarray(last, bool)
    picks = dict(strategy=strategy, p=p, x=x, g=g, rng=rng, pool=pool,
                 one_per_group=one_per_group, slice_score=slice_score, slice_share=slice_share)
    main, reasons = _picks(np.flatnonzero(in_main & ~junk), n_main, **picks)
    if len(main) < n_main and junk.any():  # the likely junk, once nothing else is left
        rest = in_main & junk
        if one_per_group:
            rest &= ~np.isin(g, g[main])
        more, why = _picks(np.flatnonzero(rest), n_main - len(main), **picks)
        main, reasons = np.concatenate([main, more]).astype(np.int64), reasons + why
    used = {int(g[i]) for i in main} if one_per_group else None
    taken = np.zeros(size, bool)
    taken[main] = True
    rand = _random_rows(rng, eligible & ~taken, n_random, used=used,
                        groups=g if one_per_group else None)
    batch = [(int(i), r) for i, r in zip(main, reasons)] + [(int(i), RANDOM) for i in rand]
    # Random rows go to random positions: an annotator cannot tell them apart.
    order = rng.permutation(len(batch))
    return [batch[j] for j in order]


# --- computation (inputs already validated) ---------------------------------------------------


def _margin_uncertainty(p: np.ndarray) -> np.ndarray:
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return np.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)


def _balanced_logistic(x: np.ndarray, y: np.ndarray, *, ridge: float = 1.0,
                       steps: int = 50) -> tuple[float, float]:
    """Intercept and slope of a logistic regression of ``y`` (bool) on one standardised
    feature, both classes weighted alike and the slope under a small ridge (separable decisions,
    common on a clean camera, would otherwise drive it to infinity): Newton's method, which
    converges in a few steps on this convex problem."""
    w = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())  # balanced: each class weighs 1/2
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    penalty = np.diag([0.0, ridge / len(x)])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))
        grad = X.T @ (w * (p - y)) + penalty @ beta
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + penalty
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def _picks(sub: np.ndarray, k: int, *, strategy, p, x, g, rng, pool, one_per_group,
           slice_score, slice_share) -> tuple[np.ndarray, list[str]]:
    """The ``k`` non-random picks among rows ``sub`` and the reason of each."""
    reason = {COLD_START: COLD_START, UNCERTAINTY: UNCERTAINTY, DIVERSE: DIVERSE,
              HYBRID: HYBRID, SLICES: HYBRID}[strategy]
    if strategy == SLICES:
        score = np.zeros(g.size) if slice_score is None else np.asarray(slice_score, np.float64)
        picked, n_t = _slice_picks(k, share=float(slice_share), p=p[sub],
                                   x=None if x is None else x[sub], g=g[sub], score=score[sub],
                                   rng=rng, pool=pool)
        return sub[picked], [SLICES] * n_t + [reason] * (len(picked) - n_t)
    main = sub[_main_picks(strategy, k, p=None if p is None else p[sub],
                           x=None if x is None else x[sub], g=g[sub], rng=rng, pool=pool,
                           one_per_group=one_per_group)]
    return main, [reason] * len(main)


def _main_picks(strategy, k, *, p, x, g, rng, pool, one_per_group) -> np.ndarray:
    size = g.shape[0]
    if k == 0 or size == 0:
        return np.zeros(0, dtype=np.int64)
    if strategy == UNCERTAINTY:
        order = np.argsort(-_margin_uncertainty(p), kind="stable")
        return order[:k]
    if strategy == HYBRID:
        u = _margin_uncertainty(p)
        cand = np.argsort(-u, kind="stable")[:pool]
        if x is None:  # a model without embeddings: most uncertain, one per group
            return _first_per_group(cand, g, k)
        # Start from the most uncertain row, then cover the pool.
        picked = _k_center(x[cand], k, first=0, groups=g[cand])
        return cand[picked]
    # DIVERSE and COLD_START
    if x is None:
        return _first_per_group(rng.permutation(size), g, k)
    first = int(rng.integers(size))
    return _k_center(x, k, first=first, groups=g if one_per_group else None)


def _slice_picks(k, *, share, p, x, g, score, rng, pool) -> tuple[np.ndarray, int]:
    """``(picks, how many of them are targeted)``: the targeted share from rows of the worst
    slices (highest ``score``, most uncertain first, then k-center diverse), the rest hybrid
    among the other groups."""
    n_t = min(k, int(np.floor(k * share + 0.5)))
    u = _margin_uncertainty(p)
    inside = np.flatnonzero(score > 0)
    target = np.zeros(0, dtype=np.int64)
    if n_t and inside.size:
        order = inside[np.lexsort((-u[inside], -score[inside]))]
        # The worst slices first: the rows scoring at least as high as the 3 * n_t-th worst, so
        # there is room for diversity without drifting into milder slices.
        floor = score[order[min(order.size, 3 * n_t) - 1]]
        cand = order[score[order] >= floor][:pool]
        if x is None:
            target = _first_per_group(cand, g, n_t)
        else:
            target = cand[_k_center(x[cand], n_t, first=0, groups=g[cand])]
    rest = np.flatnonzero(~np.isin(g, g[target]))
    more = rest[_main_picks(HYBRID, k - target.size, p=p[rest], x=None if x is None else x[rest],
                            g=g[rest], rng=rng, pool=pool, one_per_group=True)]
    return np.concatenate([target, more]).astype(np.int64), int(target.size)


def _k_center(x: np.ndarray, k: int, *, first: int, groups: np.ndarray | None) -> np.ndarray:
    """Greedy farthest-point picks; a picked row's whole group is excluded when groups given."""
    size = x.shape[0]
    k = min(k, size)
    picked = [first]
    dist = np.sum((x - x[first]) ** 2, axis=1)
    blocked = np.zeros(size, bool)
    blocked[first] = True
    if groups is not None:
        blocked |= groups == groups[first]
    while len(picked) < k:
        d = np.where(blocked, -np.inf, dist)
        nxt = int(np.argmax(d))
        if not np.isfinite(d[nxt]):
            break  # every row is picked or blocked
        picked.append(nxt)
        blocked[nxt] = True
        if groups is not None:
            blocked |= groups == groups[nxt]
        np.minimum(dist, np.sum((x - x[nxt]) ** 2, axis=1), out=dist)
    return np.asarray(picked, dtype=np.int64)


def _first_per_group(order: np.ndarray, g: np.ndarray, k: int, *, used=()) -> np.ndarray:
    """The first ``k`` rows of ``order`` whose group is new (groups in ``used`` count as seen)."""
    out, seen = [], set(used)
    for i in order:
        gi = int(g[i])
        if gi in seen:
            continue
        seen.add(gi)
        out.append(int(i))
        if len(out) == k:
            break
    return np.asarray(out, dtype=np.int64)


def _random_rows(rng, eligible: np.ndarray, k: int, *, used, groups) -> np.ndarray:
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(eligible)
    if groups is None:
        return rng.choice(rows, size=min(k, rows.size), replace=False).astype(np.int64)
    return _first_per_group(rng.permutation(rows), groups, k, used=used or ())


# --- validation -------------------------------------------------------------------------------


def _check_k(k) -> None:
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")


def _check_emb(emb) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"emb must have shape (N, D), got {x.shape}")
    return x


def _group_ids(groups, size: int) -> np.ndarray:
    """Integer group per row; rows without a group get unique negative ids."""
    if groups is None:
        return -1 - np.arange(size, dtype=np.int64)
    g = np.asarray(groups).astype(np.int64)
    solo = g < 0
    g = g.copy()
    g[solo] = -1 - np.flatnonzero(solo)
    return g


def _common_length(*, n, **arrays) -> int:
    sizes = {name: len(a) for name, a in arrays.items() if a is not None}
    if n is not None:
        sizes["n"] = int(n)
    if not sizes:
        raise ValueError("give probs, emb, groups or n: the number of rows is unknown")
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(f"arrays disagree on the number of rows: {shown}")
    return next(iter(sizes.values()))
