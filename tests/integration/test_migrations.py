"""Migrations on both backends: from an empty database to the models' schema, and the databases
they must refuse with one line."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from annotator.data.db import Base
from annotator.data.dialect import make_engine
from annotator.core.errors import WorkspaceError
from annotator.service.workspace import Workspace
from pipelines.cli import app

pytestmark = pytest.mark.backends


def test_upgrade_from_empty_gives_the_models_schema(tmp_path, new_db):
    ws = Workspace.init(tmp_path / "ws", db_url=new_db(migrated=False))
    with ws.engine.connect() as conn:
        # the newest migration (chained per branch at merge), whatever its name
        from alembic.script import ScriptDirectory

        from annotator.data.migrate import alembic_config

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head
        assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
        # What autogenerate would write next: nothing, or the migrations and db.py disagree here.
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    ws.dispose()
    Workspace.open(tmp_path / "ws", db_url=ws.db_url).dispose()  # a second open is a no-op


def test_tables_without_alembic_version_is_one_line(tmp_path, new_db):
    url = new_db(migrated=False) or f"sqlite:///{tmp_path / 'ws' / 'annotator.data.db'}"
    (tmp_path / "ws").mkdir()
    engine = make_engine(url)
    Base.metadata.create_all(engine)  # e.g. made by hand, or by a tool that never stamped it
    engine.dispose()
    with pytest.raises(WorkspaceError, match="has tables .* but no alembic_version"):
        Workspace.init(tmp_path / "ws", db_url=url)
    r = CliRunner().invoke(app, ["stats", "--project", str(tmp_path / "ws")],
                           env={"ANNOTATOR_DB_URL": url})
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and "no alembic_version" in r.output
