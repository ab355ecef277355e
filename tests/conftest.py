"""Shared fixtures. Real-data tests read ../shared/data (override: ANNOTATOR_SHARED_DATA)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder. Missing on CI is a failure, not a skip."""
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {path} (set ANNOTATOR_SHARED_DATA)")
        pytest.skip(f"real data not available at {path}")
    return path


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest leaves the page script as ``sys.modules["__main__"]``; a later
    spawn-based worker pool (parallel extraction) would then re-run that page in every child.
    Put the real one back after each test."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


# --- database backends ------------------------------------------------------------------------
# A module opts in with `pytestmark = pytest.mark.backends`: its tests that use a database
# fixture (`backend`, `db_url`, `workspace`) then run once on SQLite and once on a real
# PostgreSQL server that the suite starts itself (tests/pg.py). Everything else stays on SQLite.
BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("backends"):
        # Module scope: module fixtures (a trained loop) are built once per backend.
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run, started on first use."""
    from tests.pg import PgServer, PgUnavailable

    try:
        server, why = PgServer().start(), None
    except PgUnavailable as exc:
        server, why = None, str(exc)
    if why:  # never a skip: CI must run both backends
        pytest.fail(f"PostgreSQL tests cannot run: {why}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server):
    """A database migrated to head once; per-test databases are file copies of it."""
    from annotator.data import dialect
    from annotator.data.migrate import upgrade

    url = pg_server.create_database("annotator_template")
    engine = dialect.make_engine(url)
    upgrade(engine)
    engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to have no connections
    return "annotator_template"


@pytest.fixture(scope="module")
def backend(request):
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="module")
def new_db(request, backend):
    """``new_db(migrated=True)`` -> a database URL of this backend that nobody else uses, or
    None for SQLite (the workspace's own ``annotator.data.db``). ``migrated=False``: empty."""

    made = []  # (server, database name)

    def make(*, migrated: bool = True) -> str | None:
        if backend == "sqlite":
            return None
        server = request.getfixturevalue("pg_server")
        template = request.getfixturevalue("pg_template") if migrated else "template0"
        url = server.create_database(template=template)
        made.append((server, url.rsplit("/", 1)[1]))
        return url

    yield make
    for server, name in made:  # ~8 MB each on disk; FORCE ends connections a test left open
        server.drop_database(name)


@pytest.fixture
def db_url(new_db):
    return new_db()


@pytest.fixture
def workspace(tmp_path, db_url):
    from annotator.service.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", db_url=db_url)
    yield ws
    ws.dispose()


@pytest.fixture(scope="module")
def module_db_env(new_db):
    """For modules whose workspaces are opened by path only (the CLI, subprocesses): point
    ``ANNOTATOR_DB_URL`` at a fresh database for the module, as a team would."""
    url = new_db()
    with pytest.MonkeyPatch.context() as mp:
        if url is None:
            mp.delenv("ANNOTATOR_DB_URL", raising=False)
        else:
            mp.setenv("ANNOTATOR_DB_URL", url)
        yield url


def write_image_folder(root: Path, counts: dict[str, int], *, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder of small distinct PNGs made in code (no real data needed)."""
    import cv2

    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / label / f"{label}_{i:05d}.png"), img)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "folder", {"mask": 12, "no_mask": 9})


def pytest_collection_modifyitems(config, items):
    """Everything under tests/security/ carries the ``security`` marker."""
    for item in items:
        if "/tests/security/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.security)
