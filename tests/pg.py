"""A throwaway PostgreSQL server for the tests and the benchmarks (no pytest in here).

``PgServer().start()`` runs ``initdb`` into a fresh temp folder and ``pg_ctl start`` on a free
loopback port, with the socket in that folder. PostgreSQL refuses to run as root (CI runs as
root), so there the binaries run as the ``postgres`` system user through ``runuser`` and the
folder is handed to that user. Databases are cheap copies of a template
(``CREATE DATABASE ... TEMPLATE``), so every test can have its own.

Used by ``tests/conftest.py`` (session fixture) and ``bench/queue_latency.py`` (imported as
``tests.pg`` when run with ``python -m`` from the repository root).
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SETUP_HINT = "run `bash scripts/setup.sh` (it installs Debian's postgresql) or `apt-get install -y postgresql`"
SYSTEM_USER = "postgres"


class PgUnavailable(RuntimeError):
    """The server cannot be started here; the message is one line saying why and what to do."""


def find_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``$PG_BINDIR``, Debian's newest
    ``/usr/lib/postgresql/N/bin``, or ``PATH`` (Debian keeps them off ``PATH``)."""
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in debian), key=lambda p: _version(p.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    raise PgUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {SETUP_HINT}")


def _version(name: str) -> tuple:
    return tuple(int(x) for x in name.split(".") if x.isdigit())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in a temp folder, superuser ``postgres``, trust auth on loopback.

    ``durable=False`` (tests) turns off fsync: nothing here must survive a power cut, and CI's
    disk is slow. Benchmarks keep the server's durable defaults.
    """

    def __init__(self, *, durable: bool = False, max_connections: int = 200):
        self.durable = durable
        self.max_connections = max_connections
        self.bindir: Path | None = None
        self.root: Path | None = None
        self.port: int | None = None
        self._admin = None
        self._n = 0
        self.started_s: float | None = None

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> "PgServer":
        t0 = time.perf_counter()
        self.bindir = find_bindir()
        as_root = os.geteuid() == 0
        if as_root and shutil.which("runuser") is None:
            raise PgUnavailable("running as root without `runuser` to start PostgreSQL as "
                                f"{SYSTEM_USER}; {SETUP_HINT}")
        # Directly under /tmp: pytest's own temp folders are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="annotator-pg-"))
        if as_root:
            try:
                shutil.chown(self.root, user=SYSTEM_USER, group=None)
            except (LookupError, PermissionError) as exc:
                raise PgUnavailable(f"cannot hand {self.root} to the {SYSTEM_USER} user ({exc}); "
                                    f"{SETUP_HINT}") from None
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        opts = [f"-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}",
                f"-c max_connections={self.max_connections}"]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        last = ""
        for _ in range(3):  # the free port can be taken between the probe and the bind
            self.port = free_port()
            r = self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-w",
                          "-t", "60", "-o", " ".join([f"-p {self.port}"] + opts), "start",
                          check=False)
            if r.returncode == 0:
                break
            last = self._log_tail()
        else:
            self.stop()
            raise PgUnavailable(f"PostgreSQL did not start: {last}")
        self.started_s = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.root is not None and (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop",
                      check=False)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "PgServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- databases --------------------------------------------------------------------------
    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """A new database copied from ``template`` (``template0``: empty); returns its URL.

        FILE_COPY copies the template's files (a few ms for a small schema, fsync off) instead of
        writing every block to the WAL (PostgreSQL 15's default).
        """
        if name is None:
            self._n += 1
            name = f"t{os.getpid()}_{self._n}"
        strategy = " STRATEGY = FILE_COPY" if self._server_version() >= 150000 else ""
        self.admin().execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def admin(self):
        """An autocommit psycopg connection to the ``postgres`` database (CREATE DATABASE)."""
        if self._admin is None:
            import psycopg

            self._admin = psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                          dbname="postgres", autocommit=True)
        return self._admin

    def _server_version(self) -> int:
        return self.admin().info.server_version

    # --- helpers ----------------------------------------------------------------------------
    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if check and r.returncode != 0:
            tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
            self.stop()
            raise PgUnavailable(f"{tool} failed: {tail[0]}")
        return r

    def _log_tail(self) -> str:
        try:
            lines = (self.root / "server.log").read_text().strip().splitlines()
        except OSError:
            return "no server log"
        return lines[-1] if lines else "empty server log"
