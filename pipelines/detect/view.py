"""What the Footage page shows: the finished runs of a workspace, one run's tables, and the
sources it can run on (read through ``pipelines.detect.outputs``, which owns the format)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotator.core.errors import InputError
from annotator.data import reports
from annotator.service.workspace import Workspace
from pipelines.detect.options import RUNS_DIR
from pipelines.detect.outputs import read_report, read_table


@dataclass(frozen=True)
class RunInfo:
    path: Path
    report: dict

    @property
    def name(self) -> str:
        return self.path.name


def runs(ws: Workspace) -> list[RunInfo]:
    """Finished runs under ``<workspace>/detections``, newest first."""
    folder = ws.root / RUNS_DIR
    found = []
    for d in folder.iterdir() if folder.is_dir() else ():
        if d.is_dir() and not d.name.startswith(".") and (d / "report.json").is_file():
            try:
                found.append(RunInfo(d, read_report(d)))
            except InputError:
                continue
    return sorted(found, key=lambda r: (r.path / "report.json").stat().st_mtime, reverse=True)


def run_at(ws: Workspace, path: str | Path) -> RunInfo:
    """One finished run (a job's ``result["out"]``)."""
    p = Path(path)
    return RunInfo(p, read_report(p))


def table(run: RunInfo, name: str):
    """``tracks``, ``summary`` or ``detections`` of a run as a DataFrame."""
    return read_table(run.path, name)


def server_sources(ws: Workspace) -> list[tuple[str, str]]:
    """``(name, uri)`` of the workspace's video sources whose file is still on this server, and
    its streams: what the Footage page offers to run on."""
    with ws.read_session() as s:
        rows = reports.media_sources(s)
    return [(n, u) for n, u, k in rows if k == "stream" or Path(u).is_file()]
