"""Alembic environment: runs on the engine handed over by ``annotator.data.migrate``."""
from alembic import context

from annotator.data.db import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand (e.g. revision --autogenerate)
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url"))

with engine.begin() as connection:
    # render_as_batch: SQLite has almost no ALTER TABLE; batch mode copies the table instead.
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=True
    )
    context.run_migrations()
