"""`annotator init` and `annotator stats`: create a workspace, count what is in it."""
from __future__ import annotations

import typer
from rich.table import Table

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, open_ws
from pipelines.cli.render import emit, out

commands = typer.Typer()


@command(commands, "init")
def init_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Create a workspace (database, crops/, datasets/, models/, config.toml)."""
    from annotator.service.workspace import Workspace

    existed = (project / "config.toml").exists()
    ws = Workspace.init(project)
    where = f" --project {ws.root.resolve()}"
    steps = [f"annotator user add NAME --role admin{where}",  # the first admin (asks a password)
             f"annotator extract VIDEO_OR_FOLDER{where}",  # crops to label (or import-folder)
             f"annotator app{where}"]  # then open http://127.0.0.1:8501 and sign in
    emit({"project": str(ws.root), "created": not existed, "next": steps}, as_json,
         f"{'workspace ready' if existed else 'created workspace'} at {ws.root}\nnext:\n"
         + "\n".join(f"  {c}" for c in steps))


@command(commands, "stats")
def stats_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Counts of sources, crops by status, labels, annotators, models and datasets."""
    from annotator.data import reports
    from annotator.media import cache

    ws = open_ws(project)
    with ws.read_session() as s:
        st = reports.stats(s, ws.config.labels)
    cst = cache.status(ws)
    st["cache"] = {k: cst[k] for k in ("entries", "bytes", "cached_crops", "missing", "hit_share")}
    if as_json:
        emit(st, True)
        return
    table = Table("what", "count", title=f"workspace {ws.root}")
    table.add_row("sources", str(st["sources"]))
    for k, v in st["crops"].items():
        table.add_row(f"crops {k}", str(v))
    for k, v in st["labels"].items():
        table.add_row(f"label {k}", str(v))
    for k in ("annotators", "leases", "models", "datasets"):
        table.add_row(k, str(st[k]))
    for k, v in st["labels_by_kind"].items():  # provenance: how each active label was decided
        if v:
            table.add_row(f"labels by {k}", str(v))
    per = st["human_decisions_per_labeled_crop"]
    table.add_row("human decisions", f"{st['human_decisions']} ({'-' if per is None else per} "
                                     "per labeled crop)")
    table.add_row("cached tensors", f"{cst['entries']} ({cst['bytes'] / 1e6:.1f} MB, "
                                    f"{cst['missing']} crops missing)")
    out.print(table)
