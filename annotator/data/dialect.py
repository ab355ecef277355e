"""Engines and the differences between SQLite and PostgreSQL.

Several writer processes share one database: SQLite gets WAL, a busy timeout and
``BEGIN IMMEDIATE`` (two writers queue instead of failing on lock upgrade); PostgreSQL gets
pre-ping and a connect timeout. The one dialect difference inside a query, how a claim owns
its rows, is in ``crop_queue._claimable_ids``.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from annotator.data.db import utcnow


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """An engine whose transactions are safe under several writer processes.

    ``immediate=False`` gives plain deferred transactions for read-only pages, which then never
    wait for the write lock under SQLite's WAL.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine, immediate=immediate)
        return engine
    if url.startswith("postgresql"):
        # READ COMMITTED (the default) for both engines: plain reads take no row locks, and the
        # queue's writes lock the rows they need (queue._claimable_ids). pre_ping: a team
        # server outlives database restarts. connect_timeout: an unreachable host fails in
        # seconds with one line instead of hanging the CLI or a page.
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    """WAL, busy timeout, foreign keys, and BEGIN IMMEDIATE (SQLAlchemy's pysqlite recipe).

    pysqlite's own transaction handling is switched off so that SQLAlchemy's ``begin`` event
    decides how a transaction starts: IMMEDIATE takes the write lock up front, so two writers
    queue on ``busy_timeout`` instead of failing with "database is locked" on lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Privacy: deleted rows are overwritten with zeros, not left in free pages (erasure).
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def database_time(session: Session) -> dt.datetime:
    """Now, by the database server's clock (jobs on several hosts compare heartbeats by it)."""
    if is_sqlite(session):
        return utcnow()
    return session.scalar(text("SELECT (now() AT TIME ZONE 'utc')"))
