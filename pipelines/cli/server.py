"""`annotator app`: the labeling app (Streamlit behind the sign-in gate) for the team."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import ProjectOpt, command, open_ws
from pipelines.cli.render import err
from pipelines.cli.supervisor import serve_until_stopped

commands = typer.Typer()


APP_SERVER_OPTIONS = (
    "--server.headless", "true", "--browser.gatherUsageStats", "false",
    "--client.toolbarMode", "minimal",
    "--server.fileWatcherType", "none",  # no polling of the source files
    # Streamlit runs a full gc.collect(2) after every rerun: ~150 ms of CPU per key press with
    # pandas and SQLAlchemy loaded. Python's own generational GC is enough.
    "--runner.postScriptGC", "false",
    # A traceback would show server paths and code to any browser: errors show a line only.
    "--client.showErrorDetails", "none",
)


def app_entry() -> Path:
    """The Streamlit entry script, found through the installed ``pages`` package."""
    import pages

    return Path(pages.__file__).resolve().parent / "app.py"


@command(commands, "app")
def app_cmd(
    project: ProjectOpt = DEFAULT_PROJECT,
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 for the LAN.")] = "127.0.0.1",
):
    """Start the labeling app (Streamlit) for the team; stop it with Ctrl-C or SIGTERM."""
    import os
    import signal
    import subprocess

    from annotator.service import auth
    from annotator.core.config import check_options

    check_options(port=port)
    ws = open_ws(project)  # fails here, in one line, when there is no workspace
    # Through app_server: Streamlit's upload endpoint refuses sessions that are not signed in.
    cmd = [sys.executable, "-m", "annotator.service.app_server", "run", str(app_entry()),
           "--server.address", host,
           "--server.port", str(port), "--server.maxUploadSize",
           str(ws.config.limits.max_upload_mb), *APP_SERVER_OPTIONS]
    err.print(f"labeling app for {ws.root} at http://{host}:{port}", markup=False)
    if not auth.has_admin(ws):
        err.print("no admin yet: create one with `annotator user add NAME --role admin "
                  f"--project {ws.root.resolve()}`", markup=False)
    env = {**os.environ, "ANNOTATOR_PROJECT": str(ws.root.resolve()),
           # uvicorn believes X-Forwarded-For only from these ([auth] trusted_proxies; none)
           "FORWARDED_ALLOW_IPS": ",".join(ws.config.auth.trusted_proxies)}
    ws.dispose()
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    code = serve_until_stopped(server)
    raise typer.Exit(0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code)
