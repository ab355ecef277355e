"""Command-line runs are job rows too: the app's job lists show them (who, how far, how they
ended), and a Cancel on a page stops them."""
import pytest
from typer.testing import CliRunner

from annotator.data import job_rows
from annotator.service import jobs
from pipelines import import_folder
from pipelines.cli import app, runner
from tests.conftest import write_image_folder


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_cli_import_is_listed_as_a_done_job_by_its_user(tmp_path):
    ws = tmp_path / "ws"
    folder = write_image_folder(tmp_path / "in", {"mask": 3, "no_mask": 2})
    assert cli("init", "--project", ws).exit_code == 0
    r = cli("import-folder", folder, "--labeled", "--project", ws, "--json")
    assert r.exit_code == 0, r.output
    from annotator.service.workspace import Workspace

    (job,) = jobs.list_jobs(Workspace.open(ws))
    assert job.kind == "import" and job.status == "done" and job.progress == 1.0
    assert job.started_by.startswith("cli:")
    assert job.result["added"] == 5 and job.finished_at is not None
    assert job.args["folder"] == str(folder) and job.args["labeled"] is True


def test_a_failed_cli_run_is_listed_with_its_one_line_reason(tmp_path):
    ws = tmp_path / "ws"
    assert cli("init", "--project", ws).exit_code == 0
    r = cli("retrain", "--project", ws)
    assert r.exit_code == 2 and "no labeled crops yet" in r.output and "Traceback" not in r.output
    from annotator.service.workspace import Workspace

    (job,) = jobs.list_jobs(Workspace.open(ws))
    assert job.kind == "retrain" and job.status == "failed"
    assert job.message.startswith("no labeled crops yet") and not job.active


def test_cancel_from_the_app_stops_a_cli_run_and_records_it(workspace, tmp_path):
    folder = write_image_folder(tmp_path / "in", {"mask": 4, "no_mask": 4})
    seen = []

    def bar(done, total, message="", *, stage=None, data=None):
        # What a page's Cancel does to the row (without signalling the test's own process).
        if not seen:
            (job,) = jobs.list_jobs(workspace)
            seen.append(job)
            with workspace.session() as s:
                job_rows.update_job(s, job.id, cancel_requested=True)

    with pytest.raises(runner.CancelledFromApp):
        runner.run_recorded(workspace, "import", import_folder.ImportOptions(folder=folder), bar,
                            started_by="cli:tester")
    assert seen and seen[0].status == "running" and seen[0].pid is not None
    (job,) = jobs.list_jobs(workspace)
    assert job.status == "cancelled" and job.started_by == "cli:tester"
