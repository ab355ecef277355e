"""Alembic migrations applied when a workspace is opened."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from annotator.data.db import Base
from annotator.core.errors import WorkspaceError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply pending migrations; refuse a database written by a newer version of the tool."""
    cfg = alembic_config(engine)
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            ours = sorted(set(inspect(conn).get_table_names()) & set(Base.metadata.tables))
    except Exception as exc:  # not a database at all, unreadable file, server unreachable, ...
        reason = getattr(exc, "orig", None) or exc  # the driver's message, without SQLAlchemy's links
        reason = " ".join(str(reason).split())  # psycopg's messages span lines (hints)
        raise WorkspaceError(f"cannot open the database at {engine.url}: {reason}") from None
    if current == head:
        return
    if current is None and ours:
        # Creating the schema would fail half-way on the first existing table.
        raise WorkspaceError(
            f"the database at {engine.url} has tables ({', '.join(ours[:3])}"
            f"{', ...' if len(ours) > 3 else ''}) but no alembic_version (no schema version): not "
            "made by this tool, or its schema record was lost; use an empty database")
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise WorkspaceError(
            f"the database was made by a newer version of facemask-annotator (schema {current}); "
            "upgrade the tool to open it"
        )
    try:
        command.upgrade(cfg, "head")
    except Exception as exc:  # a migration that cannot run on this database: say why, in a line
        reason = getattr(exc, "orig", None) or exc
        raise WorkspaceError(f"cannot bring the database at {engine.url} up to date: {reason}") from None
