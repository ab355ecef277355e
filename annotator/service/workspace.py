"""A project workspace: database, crop store, datasets, models and config.toml in one folder.

``Workspace.open`` is the only place that reads ``ANNOTATOR_*`` settings from the environment.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from annotator.data import dialect
from annotator.core.config import Config, dump_config, load_config
from annotator.core.errors import WorkspaceError
from annotator.media.store import CropStore

DEFAULT_PROJECT = Path("data")
CONFIG_NAME = "config.toml"
DB_NAME = "annotator.data.db"


def default_project() -> Path:
    return Path(os.environ.get("ANNOTATOR_PROJECT") or DEFAULT_PROJECT)


def workspace_above(path: Path) -> Path | None:
    """The workspace folder that ``path`` is (or is inside), if any: a folder with
    config.toml and annotator.data.db."""
    path = Path(path).resolve()
    for folder in [path, *path.parents]:
        if (folder / CONFIG_NAME).is_file() and (folder / DB_NAME).exists():
            return folder
    return None


def database_url(value: str | None, root: Path) -> str:
    """The SQLAlchemy URL for a workspace: ``value`` (``--db-url`` / ``ANNOTATOR_DB_URL``) or the
    workspace's own SQLite file. ``postgresql://`` and ``postgres://`` (what PostgreSQL tools and
    hosting services print) mean psycopg 3, the driver we install; SQLAlchemy would look for
    psycopg2."""
    if not value:
        return f"sqlite:///{(Path(root) / DB_NAME).resolve()}"
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise WorkspaceError("ANNOTATOR_DB_URL is not a database URL (expected e.g. "
                             "postgresql://USER:PASSWORD@HOST:5432/DBNAME)") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def redact(url: str) -> str:
    """The URL with its password as ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


@dataclass
class Workspace:
    root: Path
    config: Config
    db_url: str
    _engine: object = field(default=None, repr=False)
    _read_engine: object = field(default=None, repr=False)

    # --- creation and opening ---------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, *, db_url: str | None = None) -> "Workspace":
        """Create (or complete) a workspace; safe to run twice."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        cfg_path = root / CONFIG_NAME
        try:
            for sub in ("crops", "datasets", "models", "jobs"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            if not cfg_path.exists():
                cfg_path.write_text(dump_config(Config()))
        except NotADirectoryError as exc:
            raise WorkspaceError(f"cannot create a workspace at {root}: {exc.filename} is in the "
                                 "way (a file, not a folder)") from None
        except OSError as exc:
            raise WorkspaceError(f"cannot create a workspace at {root}: "
                                 f"{exc.strerror or exc}") from None
        return cls.open(root, db_url=db_url)

    @classmethod
    def open(cls, root: Path | None = None, *, db_url: str | None = None) -> "Workspace":
        """Open an existing workspace and bring its database schema up to date."""
        root = Path(root) if root is not None else default_project()
        if not (root / CONFIG_NAME).is_file():
            raise WorkspaceError(
                f"no workspace at {root} (missing {CONFIG_NAME}); create it with "
                f"`annotator init --project {root}`"
            )
        cfg = load_config(root / CONFIG_NAME)
        url = database_url(db_url or os.environ.get("ANNOTATOR_DB_URL"), root)
        ws = cls(root=root, config=cfg, db_url=url)
        from annotator.data.migrate import upgrade

        try:
            engine = ws.engine
        except Exception as exc:  # no driver for the scheme, bad options: no I/O happens here
            raise WorkspaceError(f"cannot use the database URL {redact(url)}: {exc}") from None
        upgrade(engine)
        return ws

    # --- resources ----------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            self._engine = dialect.make_engine(self.db_url, immediate=True)
        return self._engine

    @property
    def read_engine(self):
        if self._read_engine is None:
            self._read_engine = dialect.make_engine(self.db_url, immediate=False)
        return self._read_engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only transaction that never waits for writers."""
        with Session(self.read_engine, expire_on_commit=False) as s, s.begin():
            yield s

    @property
    def store(self) -> CropStore:
        return CropStore(self.crops_dir)

    @property
    def crops_dir(self) -> Path:
        return self.root / "crops"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` is one of the workspace's own or contains the workspace (an import
        from it would add the workspace's crops to itself)."""
        folder = Path(folder).resolve()
        return self.owns(folder) or self.root.resolve().is_relative_to(folder)

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is (or is inside) one of the workspace's own files or folders, which
        no export, upload or output may overwrite."""
        target = Path(path).resolve()
        own = [self.root / DB_NAME, self.root / CONFIG_NAME, self.crops_dir, self.models_dir,
               self.datasets_dir, self.jobs_dir]
        own += [self.root / f"{DB_NAME}-wal", self.root / f"{DB_NAME}-shm"]
        if any(target == p.resolve() or p.resolve() in target.parents for p in own):
            return True
        # A hard link to the database or config is another name for the same file.
        return target.is_file() and any(p.is_file() and os.path.samefile(target, p) for p in own)

    def dispose(self) -> None:
        for eng in (self._engine, self._read_engine):
            if eng is not None:
                eng.dispose()
