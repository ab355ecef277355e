"""The labeling service behind the Label, Grid, Review and Browse pages: pick, claim, show,
decide, undo, review.

It connects the pure sampler (:mod:`annotator.core.sample`) with the queue (:mod:`annotator.data.crop_queue`):
arrays for the claimable crops are read through :mod:`annotator.data.reports`,
``sample.select_batch`` picks a batch, and ``crop_queue.claim_batch`` holds it under a lease. Pages
call these functions and get dataclasses or DataFrames back; every write is one short
transaction. Cards (what a page shows of a crop) are in :mod:`annotator.service.crop_cards`, Review's
analytics in :mod:`annotator.service.review`, the Dashboard's reads in
:mod:`annotator.service.dashboard`.

Speed on a large queue: only the ``hybrid_pool`` most uncertain claimable crops (``Crop.priority``
is set to the active model's uncertainty when crops are scored) plus a small uniform sample of the
whole queue are read per claim, and predictions are cached per model version, since they never
change once written.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from annotator.core import sample
from annotator.data import crop_queue, db, model_reports, reports
from annotator.service import autolabels
from annotator.core.config import NOT_A_FACE, SKIP
from annotator.data.model_versions import Version
from annotator.service.crop_cards import Card, _cards, active_model, cards
from annotator.service.workspace import Workspace

DOUBLE = "double"  # sampling reason of a crop served for its second vote
GROUP_STRIDE = 10_000_000  # group id = source_id * stride + track_id


@dataclass(frozen=True)
class Rate:
    """An annotator's pace."""

    last_hour: int
    today: int


# --- choosing and claiming --------------------------------------------------------------------


def choose(ws: Workspace, annotator_id: int, size: int, *, seed: int | None = None,
           strategy: str | None = None) -> list[tuple[int, str]]:
    """Candidates for the annotator's next batch, best first: ``[(crop_id, reason), ...]``.

    Second votes for double-annotated crops come first (reason ``"double"``), then the
    sampler's batch over the top of the queue plus a uniform sample of the whole queue.
    """
    cfg = ws.config.sampling
    strategy = strategy or cfg.strategy
    seed = time.time_ns() % 2**32 if seed is None else seed
    model = active_model(ws)
    with ws.read_session() as s:
        out: list[tuple[int, str]] = []
        if cfg.double_annotation > 0:
            out = [(cid, DOUBLE) for cid in reports.awaiting_vote(s, annotator_id, limit=size)]
        want = size - len(out)
        if want <= 0:
            return out[:size]
        n_random = max(1, int(np.ceil(want * cfg.random_share))) if cfg.random_share > 0 else 0
        top = reports.claimable_top(s, annotator_id, limit=cfg.hybrid_pool)
        rand = reports.claimable_sample(s, annotator_id, size=max(4 * n_random, 20), seed=seed)
        cands = pd.concat([top, rand[~rand["crop_id"].isin(top["crop_id"])]], ignore_index=True)
        if cands.empty:
            return out
        in_sample = cands["crop_id"].isin(rand["crop_id"]).to_numpy()
        probs = emb = scored = None
        if model is not None:
            probs, emb, have = _predictions(ws, s, model, cands["crop_id"].to_numpy())
            if probs is not None and not have.all():
                # Crops the model has not scored yet wait for scoring (or a random draw).
                keep = have | in_sample
                cands, in_sample = cands[keep].reset_index(drop=True), in_sample[keep]
                probs, emb, scored = _predictions(ws, s, model, cands["crop_id"].to_numpy())
        last = likely_junk(s, cands, cfg.junk_min_each) if cfg.junk_last else None
    groups = _groups(cands)
    targeted = {}
    if strategy == sample.SLICES and probs is not None:  # the worst slices get a share
        from annotator.data import slice_store

        with ws.read_session() as s:
            targeted = dict(slice_share=cfg.slice_share, slice_score=slice_store.row_scores(
                s, model.id, list(model.classes), cands["crop_id"].to_numpy(), probs,
                min_n=cfg.slice_min_n))
    batch = sample.select_batch(
        strategy, want, probs=probs, emb=emb, groups=groups, n=len(cands),
        random_share=cfg.random_share, random_pool=in_sample, main_pool=scored,
        pool=cfg.hybrid_pool, seed=seed, last=last, **targeted,
    )
    ids = cands["crop_id"].to_numpy()
    return out + [(int(ids[i]), reason) for i, reason in batch]


def likely_junk(s, crops: pd.DataFrame, min_each: int) -> np.ndarray | None:
    """Which of ``crops`` (columns priority, detector, det_score, audit) the team's own
    ``not_a_face`` decisions call likely junk (``sample.likely_junk``, fitted per detector: each
    scores on its own scale); None when none is. The sampler serves them once the rest of the
    queue's top is gone; the Dashboard counts them.

    Never junk: an audit crop (deferring the junk-looking ones would leave out of the audit
    exactly the machine labels a not_a_face makes wrong, and bias its error down) and a track
    mate the model disputes (``autolabels.FIRST``: served first on purpose)."""
    decided = reports.decided_scores(s)
    if decided.empty or crops.empty:
        return None
    last = np.zeros(len(crops), bool)
    for name, seen in decided.groupby("detector"):
        rows = (crops["detector"] == name).to_numpy()
        if rows.any():
            last[rows] = sample.likely_junk(crops.loc[rows, "det_score"].astype(float),
                                            seen["det_score"].astype(float), seen["face"],
                                            min_each=min_each)
    last &= ~crops["audit"].astype(bool).to_numpy()
    last &= (crops["priority"] < autolabels.FIRST).to_numpy()
    return last if last.any() else None


def claim(ws: Workspace, annotator_id: int, size: int, *, seed: int | None = None,
          strategy: str | None = None) -> list[Card]:
    """Hold up to ``size`` crops for the annotator and return them as cards, held ones first.

    Crops the annotator already holds (a reload, an undo) come back first; new ones are picked
    by :func:`choose`. A share ``sampling.double_annotation`` of newly claimed crops is marked
    to need two votes (deterministic per crop id).
    """
    cfg = ws.config.sampling
    claims: list[crop_queue.Claim] = []
    for attempt in range(3):  # another annotator may take a candidate between read and claim
        cands = choose(ws, annotator_id, size, seed=seed, strategy=strategy)
        with ws.session() as s:
            claims = crop_queue.claim_batch(s, annotator_id, size, candidates=cands,
                                       lease_seconds=cfg.lease_seconds)
            fresh = [c.crop_id for c in claims if c.sampling not in (DOUBLE, None)]
            if cfg.double_annotation > 0:
                crop_queue.require_votes(s, [c for c in fresh if _double(c, cfg.double_annotation)], 2)
        if len(claims) >= size or len(cands) < size:
            break
        seed = None if seed is None else seed + 1
    return cards(ws, [(c.crop_id, c.sampling) for c in claims], annotator_id=annotator_id)


# --- deciding ---------------------------------------------------------------------------------


def submit(ws: Workspace, annotator_id: int, crop_id: int, value: str, *,
           seconds: float | None = None) -> int:
    """Record one decision (a class, ``not_a_face`` or ``skip``) in its own transaction."""
    with ws.session() as s:
        label_id = crop_queue.submit_label(s, annotator_id, crop_id, value,
                                      allowed=ws.config.label_values, seconds=seconds)
        _recheck_auto_labels(ws, s, [label_id])
        return label_id


def _recheck_auto_labels(ws: Workspace, s, label_ids) -> None:
    """A random-share label the active model got wrong can lift a band's audited bound above
    ``[autolabel] max_error``: the auto labels it no longer backs are withdrawn with it. With
    ``[autolabel] propagate``, the decided crops' track mates the model agrees on are labeled
    ``propagated`` (and the ones it disputes are served first)."""
    autolabels.after_people(s, label_ids, ws.config.labels, ws.config.autolabel, root=ws.root)


def submit_page(ws: Workspace, annotator_id: int, decisions: Mapping[int, str], *,
                seconds: float | None = None) -> int:
    """Record a whole grid page in ONE transaction: all of it is saved, or none of it.

    ``seconds`` is the time spent on the page; each label gets its share. The labels share one
    decision id, so one :func:`undo` takes back the whole page.
    """
    if not decisions:
        return 0
    each = None if seconds is None else seconds / len(decisions)
    page = uuid.uuid4().hex  # the page's labels share it: stats count one decision per page
    with ws.session() as s:
        ids = [crop_queue.submit_label(s, annotator_id, int(crop_id), value,
                                  allowed=ws.config.label_values, seconds=each, method="grid",
                                  decision_id=page)
               for crop_id, value in decisions.items()]
        _recheck_auto_labels(ws, s, ids)
    return len(decisions)


def submit_track(ws: Workspace, annotator_id: int, card: Card, value: str, *,
                 seconds: float | None = None) -> list[int]:
    """One decision for the crop and every track mate in its strip this annotator may decide:
    a label row each (method ``track``, one shared decision id: one undo reverts them all).
    Mates someone took meanwhile are passed over. Returns the labeled crop ids."""
    ids = [card.crop_id] + [m.crop_id for m in card.strip if m.decidable]
    with ws.session() as s:
        decision, done = crop_queue.submit_decision(s, annotator_id, ids, value,
                                               allowed=ws.config.label_values, seconds=seconds)
        _recheck_auto_labels(ws, s, autolabels.labels_of_decision(s, decision))
    return done


def undo(ws: Workspace, annotator_id: int) -> list[Card]:
    """Withdraw the annotator's last decision (every crop of a track decision); returns the
    crops, held again, to show first. Empty when there is nothing to undo."""
    with ws.session() as s:
        crop_ids = crop_queue.undo_last(s, annotator_id, lease_seconds=ws.config.sampling.lease_seconds)
    return cards(ws, [(cid, "undo") for cid in crop_ids])


def queue_left(ws: Workspace) -> int:
    """Crops still waiting for a label (everyone's queue)."""
    with ws.read_session() as s:
        return reports.unlabeled_count(s)


def pace(times: Sequence[float], now: float, *, window_s: float = 900.0,
         min_labels: int = 10) -> float | None:
    """Labels per hour over the last ``window_s`` seconds of ``times`` (monotonic seconds of
    each decision); None until ``min_labels`` decisions, so 5 quick labels do not read as
    5,000 an hour. A window longer than the session so far uses the session's length."""
    if len(times) < min_labels:
        return None
    recent = [t for t in times if now - t <= window_s]
    span = min(window_s, now - min(times))
    return 3600.0 * len(recent) / max(span, 60.0)


def my_recent(ws: Workspace, annotator_id: int, *, limit: int = 50) -> list[Card]:
    """The annotator's latest labels as cards (``label`` = the value they gave), newest first."""
    with ws.read_session() as s:
        rows = reports.my_recent_labels(s, annotator_id, limit=limit)
    byid = {c.crop_id: c for c in _cards(ws, [(int(i), "mine") for i in rows["crop_id"]])}
    return [dataclasses.replace(byid[int(r.crop_id)], label=r.value)
            for r in rows.itertuples(index=False) if int(r.crop_id) in byid]


def browse(ws: Workspace, *, limit: int = 120, **filters) -> list[Card]:
    """Crops matching ``reports.browse`` filters, with their current label, newest label first."""
    with ws.read_session() as s:
        rows = reports.browse(s, limit=limit, **filters)
    byid = {c.crop_id: c for c in _cards(ws, [(int(i), None) for i in rows["crop_id"]])}
    seen, out = set(), []
    for r in rows.itertuples(index=False):
        cid = int(r.crop_id)
        if cid in byid and cid not in seen:
            seen.add(cid)
            out.append(dataclasses.replace(byid[cid], label=None if pd.isna(r.value) else r.value))
    return out


def sources(ws: Workspace) -> pd.DataFrame:
    with ws.read_session() as s:
        return reports.sources(s)


def release(ws: Workspace, annotator_id: int) -> int:
    """Give every crop the annotator holds back to the queue (sign-out, leaving the Label or
    Grid page): another annotator can claim them at once."""
    with ws.session() as s:
        return crop_queue.release(s, annotator_id)


def held_by_others(ws: Workspace, annotator_id: int) -> str | None:
    """``"N crops held by others, free at hh:mm UTC"`` when other annotators hold crops, else
    None: the reason an empty batch is not an empty queue."""
    with ws.read_session() as s:
        n, until = reports.held_by_others(s, annotator_id)
    if not n:
        return None
    return (f"{n:,} {'crop' if n == 1 else 'crops'} held by others, free at "
            f"{until:%H:%M} UTC at the latest (or as soon as they leave the page or sign out)")


def rate(ws: Workspace, annotator_id: int, *, now: dt.datetime | None = None) -> Rate:
    now = now or db.utcnow()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with ws.read_session() as s:
        return Rate(
            last_hour=reports.label_count_since(s, annotator_id, now - dt.timedelta(hours=1)),
            today=reports.label_count_since(s, annotator_id, day),
        )


def shortcuts(labels: Sequence[str]) -> dict[str, str]:
    """Keyboard key per decision: m mask, n no_mask, x not a face, s skip, z undo; other
    classes get their first free letter (c and r are reserved by Streamlit)."""
    fixed = {"mask": "m", "no_mask": "n", NOT_A_FACE: "x", SKIP: "s", "undo": "z"}
    taken = set(fixed.values()) | {"c", "r"}
    out = {}
    for value in [*labels, NOT_A_FACE, SKIP, "undo"]:
        key = fixed.get(value)
        if key is None:
            key = next((ch for ch in value.lower() if ch.isalnum() and ch not in taken),
                       next((d for d in "123456789" if d not in taken), None))
        if key is not None:
            taken.add(key)
        out[value] = key
    return out


# --- helpers ----------------------------------------------------------------------------------


_CACHE_LOCK = threading.Lock()
_PRED_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()  # (db_url, model id) -> crop_id -> row
_CACHE_ROWS = 300_000


def _predictions(ws, s, model: Version, crop_ids: np.ndarray):
    """probs (n, K), emb (n, D) or None, and a mask of crops that have a prediction."""
    key = (ws.db_url, model.id)
    with _CACHE_LOCK:
        cache = _PRED_CACHE.setdefault(key, {})
        _PRED_CACHE.move_to_end(key)
        while len(_PRED_CACHE) > 2:
            _PRED_CACHE.popitem(last=False)
        missing = [int(c) for c in crop_ids if int(c) not in cache]
    if missing:
        ids, probs, emb = model_reports.prediction_arrays(s, model.id, missing)
        with _CACHE_LOCK:
            if len(cache) + len(ids) > _CACHE_ROWS:
                cache.clear()
            for j, cid in enumerate(ids):
                cache[int(cid)] = (probs[j], None if emb is None else emb[j])
    rows = [cache.get(int(c)) for c in crop_ids]
    have = np.array([r is not None for r in rows], bool)
    if not have.any():
        return None, None, have
    # Rows without a prediction get placeholders; callers keep them out of the model-based picks.
    first = next(r for r in rows if r is not None)
    k = len(first[0])
    probs = np.array([r[0] if r is not None else np.full(k, 1.0 / k) for r in rows])
    emb = None
    embs = [r[1] for r in rows if r is not None]
    if all(e is not None for e in embs) and len({e.shape for e in embs}) == 1:
        blank = np.zeros_like(embs[0])
        emb = np.stack([r[1] if r is not None else blank for r in rows])
    return probs, emb, have


def _groups(cands: pd.DataFrame) -> np.ndarray:
    track = cands["track_id"]
    g = cands["source_id"].to_numpy(np.int64) * GROUP_STRIDE + track.fillna(0).to_numpy(np.int64)
    g[track.isna().to_numpy()] = -1  # no track: its own group
    return g


def _double(crop_id: int, share: float) -> bool:
    """Whether this crop is in the double-annotated share (a fixed hash of its id)."""
    return ((crop_id * 2654435761) % 2**32) / 2**32 < share
