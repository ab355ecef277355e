"""The audit trail (GDPR art. 30 style records): who viewed which crop, which frame context, who
exported, erased, changed a role. One append-only table, ``db.TrailEvent``.

Cheap on the labeling path: a page records the crops it shows in ONE multi-row insert per
render (``record``), and nothing is read back. Events carry no image, box or sha256, and no
foreign key, so they outlive an erased crop (shown as "crop N (erased)") or a deleted account.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from annotator.data import db

VIEW, CONTEXT, EXPORT, ERASE, ROLE, RETENTION = (
    "view", "context", "export", "erase", "role", "retention")
ACTIONS = (VIEW, CONTEXT, EXPORT, ERASE, ROLE, RETENTION)
PAGES = ("label", "grid", "review", "browse", "admin", "cli")


def record(session: Session, actor: str, action: str, *, page: str | None = None,
           crop_ids: Iterable[int] = (), detail: dict | None = None) -> int:
    """Append one event, or one per crop in ``crop_ids`` (a single INSERT). Returns the rows."""
    now = db.utcnow()
    ids = list(dict.fromkeys(int(c) for c in crop_ids))
    rows = [{"at": now, "actor": actor, "action": action, "page": page, "crop_id": c,
             "erased": False, "detail": detail} for c in ids] or [
        {"at": now, "actor": actor, "action": action, "page": page, "crop_id": None,
         "erased": False, "detail": detail}]
    session.execute(insert(db.TrailEvent), rows)
    return len(rows)


def record_in(ws, actor: str, action: str, **kw) -> int:
    """``record`` in its own transaction, when the workspace's trail is on (config)."""
    if not ws.config.privacy.trail:
        return 0
    with ws.session() as s:
        return record(s, actor, action, **kw)


def mark_erased(session: Session, crop_ids: Sequence[int]) -> None:
    """The events about these crops stay, flagged: the crop they name no longer exists."""
    for part in db.chunks(list(crop_ids)):
        session.execute(update(db.TrailEvent).where(db.TrailEvent.crop_id.in_(part))
                        .values(erased=True))


def query(session: Session, *, actor: str | None = None, action: str | None = None,
          crop_id: int | None = None, page: str | None = None,
          since: dt.datetime | None = None, until: dt.datetime | None = None,
          limit: int = 1000) -> list[dict]:
    """Events newest first as plain dicts, with ``what`` ("crop 12", "crop 12 (erased)")."""
    t = db.TrailEvent
    q = select(t).order_by(t.id.desc()).limit(limit)
    for col, val in ((t.actor, actor), (t.action, action), (t.crop_id, crop_id), (t.page, page)):
        if val is not None:
            q = q.where(col == val)
    if since is not None:
        q = q.where(t.at >= since)
    if until is not None:
        q = q.where(t.at < until)
    return [_as_dict(e) for e in session.scalars(q)]


def events(ws, **filters) -> list[dict]:
    """``query`` in its own read transaction (pages and the CLI)."""
    with ws.read_session() as s:
        return query(s, **filters)


def describe(crop_id: int | None, erased: bool) -> str:
    if crop_id is None:
        return ""
    return f"crop {crop_id} (erased)" if erased else f"crop {crop_id}"


def _as_dict(e: db.TrailEvent) -> dict:
    return {"id": e.id, "at": e.at.isoformat(sep=" ", timespec="seconds"), "actor": e.actor,
            "action": e.action, "page": e.page, "crop_id": e.crop_id, "erased": bool(e.erased),
            "what": describe(e.crop_id, bool(e.erased)), "detail": e.detail}


# --- off the key path ---------------------------------------------------------------------------
# A page records what it shows through one background thread: the render never waits for the
# insert (SQLite's write lock may be held by a claim), and the events still reach the table in
# order. ``flush`` waits for them (tests, shutdown).

_pool = None
_pending: list = []


def record_later(ws, actor: str, action: str, **kw) -> None:
    """``record_in`` on the trail's background thread; returns at once."""
    global _pool
    if not ws.config.privacy.trail:
        return
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trail")
    _pending[:] = [f for f in _pending if not f.done()]
    future = _pool.submit(record_in, ws, actor, action, **kw)
    future.add_done_callback(_log_failure)
    _pending.append(future)


def _log_failure(future) -> None:
    """A lost event is logged on the server (the page that caused it has moved on)."""
    if future.exception() is not None:
        import logging

        logging.getLogger(__name__).error("audit trail: event not stored: %s", future.exception())


def record_shown(ws, memo, key: str, actor: str, page: str, crop_ids, *,
                 action: str = VIEW, detail: dict | None = None) -> None:
    """Record a page's crops once per distinct set shown under ``key`` of ``memo`` (the page's
    session state): Streamlit reruns a page on every click, the trail wants each showing once."""
    ids = tuple(int(c) for c in crop_ids)
    if ids and memo.get(f"trail_{key}") != ids:
        memo[f"trail_{key}"] = ids
        record_later(ws, actor, action, page=page, crop_ids=ids, detail=detail)


def flush(timeout: float = 30.0) -> None:
    """Wait until every event handed to ``record_later`` is stored."""
    for f in list(_pending):
        f.result(timeout=timeout)
