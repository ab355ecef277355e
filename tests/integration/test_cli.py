"""The CLI end to end through Typer's runner (and the real console script for real data)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import write_image_folder

runner = CliRunner()


def cli(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_init_says_the_next_commands(tmp_path):
    ws = tmp_path / "ws"
    r = cli("init", "--project", ws)
    assert r.exit_code == 0 and "next:" in r.output
    assert f"annotator user add NAME --role admin --project {ws.resolve()}" in r.output
    assert f"annotator app --project {ws.resolve()}" in r.output
    again = json.loads(cli("init", "--project", ws, "--json").stdout)
    assert again["created"] is False and again["next"][0].startswith("annotator user add")


def test_init_import_stats_export(tmp_path):
    ws = tmp_path / "ws"
    folder = write_image_folder(tmp_path / "in", {"mask": 7, "no_mask": 5})
    (folder / "mask" / "notes.txt").write_text("not an image")
    (folder / "no_mask" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert cli("init", "--project", ws).exit_code == 0
    r = cli("import-folder", folder, "--labeled", "--project", ws, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["added"] == 12 and rep["unreadable"] == 2
    assert rep["labels"] == {"mask": 7, "no_mask": 5}
    r = cli("import-folder", folder, "--labeled", "--project", ws, "--json")
    assert json.loads(r.stdout)["added"] == 0
    st = json.loads(cli("stats", "--project", ws, "--json").stdout)
    assert st["crops"] == {"total": 12, "labeled": 12, "unlabeled": 0, "skipped": 0, "not_a_face": 0}
    assert st["labels"] == {"mask": 7, "no_mask": 5}
    assert {"sources", "annotators", "models", "datasets"} <= st.keys()
    r = cli("export", tmp_path / "out", "--format", "imagefolder", "--project", ws, "--json")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "out" / "mask").iterdir())) == 7
    r = cli("export", tmp_path / "labels.csv", "--format", "csv", "--project", ws)
    assert r.exit_code == 0
    assert len((tmp_path / "labels.csv").read_text().strip().splitlines()) == 13


def test_user_add_from_stdin(tmp_path):
    ws = tmp_path / "ws"
    cli("init", "--project", ws)
    r = cli("user", "add", "alice", "--role", "admin", "--password-stdin", "--project", ws, input="pw1234pw1234\n")
    assert r.exit_code == 0, r.output
    r = cli("user", "list", "--project", ws, "--json")
    (alice,) = json.loads(r.stdout)
    assert (alice["name"], alice["role"], alice["disabled"], alice["labels"]) == ("alice", "admin", False, 0)
    r = cli("user", "add", "ALICE", "--password-stdin", "--project", ws, input="pw1234pw1234\n")
    assert r.exit_code != 0 and "already exists" in r.output  # names ignore case


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    ws = tmp_path / "ws"
    r = cli("stats", "--project", tmp_path / "nowhere")
    assert r.exit_code != 0 and "no workspace" in r.output and "Traceback" not in r.output
    cli("init", "--project", ws)
    r = cli("import-folder", tmp_path / "missing", "--project", ws)
    assert r.exit_code != 0 and "does not exist" in r.output
    folder = write_image_folder(tmp_path / "in", {"cats": 2})
    r = cli("import-folder", folder, "--labeled", "--project", ws)
    assert r.exit_code != 0 and "cats" in r.output
    r = cli("export", tmp_path / "o", "--format", "xml", "--project", ws)
    assert r.exit_code != 0 and "unknown format" in r.output
    for f in ws.glob("annotator.db*"):
        f.unlink()
    (ws / "annotator.db").write_bytes(b"this is not sqlite" * 100)
    r = cli("stats", "--project", ws)
    assert r.exit_code != 0 and "cannot open the database" in r.output
    for res in (r,):
        assert len(res.output.strip().splitlines()) == 1


def test_import_real_faces(tmp_path, shared_data):
    """Acceptance: the real faces folder imports with its labels, and a second import adds nothing."""
    env = {**os.environ, "ANNOTATOR_PROJECT": str(tmp_path / "ws")}
    exe = [str(Path(sys.executable).with_name("annotator"))]
    subprocess.run([*exe, "init"], env=env, check=True, capture_output=True)
    faces = shared_data / "faces"
    first = subprocess.run([*exe, "import-folder", faces, "--labeled", "--json"], env=env,
                           check=True, capture_output=True, text=True)
    assert json.loads(first.stdout)["unreadable"] == 0
    again = subprocess.run([*exe, "import-folder", faces, "--labeled", "--json"], env=env,
                           check=True, capture_output=True, text=True)
    assert json.loads(again.stdout)["added"] == 0
    st = json.loads(subprocess.run([*exe, "stats", "--json"], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    assert st["labels"]["mask"] == 2135 and st["labels"]["no_mask"] == 1930
    assert st["crops"]["total"] == 4065
    # Byte-identical files share one stored image.
    stored = sum(1 for p in Path(tmp_path / "ws" / "crops").rglob("*") if p.is_file())
    assert stored < 4065


def test_unreachable_database_is_one_line(tmp_path):
    """ANNOTATOR_DB_URL at a closed port: one line naming the server (password hidden), exit 1."""
    from tests.pg import free_port

    ws = tmp_path / "ws"
    assert cli("init", "--project", ws).exit_code == 0
    url = f"postgresql://annotator:s3cret@127.0.0.1:{free_port()}/annotator"
    r = runner.invoke(app, ["stats", "--project", str(ws)], env={"ANNOTATOR_DB_URL": url})
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "cannot open the database at postgresql+psycopg://annotator:***@127.0.0.1" in r.output
    assert "s3cret" not in r.output


# --- the package: defaults owned by the options, renamed flags, python -m ----------------------

# Flags that are no job option: the workspace, output, and what the command itself does.
OWN_DEFAULTS = {"project", "as_json", "password_stdin", "backfill", "resume", "port", "host"}


def test_job_options_default_to_none_so_the_dataclasses_own_them():
    import typer

    def walk(command, path):
        for p in getattr(command, "params", ()):
            if p.name not in OWN_DEFAULTS and p.default is not None:
                yield f"{path} {p.name}={p.default!r}"
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    assert list(walk(typer.main.get_command(app), "annotator")) == []


def test_an_unset_flag_leaves_the_options_default(tmp_path):
    from pipelines import export

    ws = tmp_path / "ws"
    cli("init", "--project", ws)
    cli("import-folder", write_image_folder(tmp_path / "in", {"mask": 2, "no_mask": 1}),
        "--labeled", "--project", ws)
    r = cli("export", tmp_path / "out", "--project", ws, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["format"] == export.ExportOptions(out=tmp_path).format
    assert (tmp_path / "out" / "mask").is_dir()  # imagefolder, the dataclass's default
    r = cli("audit", "--action", "export", "--project", ws, "--json")
    (event,) = json.loads(r.stdout)
    assert event["detail"]["format"] == "imagefolder" and event["detail"]["with_provenance"] is False


def test_detect_threshold_is_min_prob_and_min_score_still_works(tmp_path):
    ws = tmp_path / "ws"
    cli("init", "--project", ws)
    clip = write_image_folder(tmp_path / "in", {"x": 1})
    r = runner.invoke(app, ["detect", str(clip), "--min-prob", "1.5", "--project", str(ws)])
    assert r.exit_code != 0 and "must be a number between 0 and 1, got 1.5" in r.stderr
    assert "deprecated" not in r.stderr
    r = runner.invoke(app, ["detect", str(clip), "--min-score", "1.5", "--project", str(ws)])
    assert r.exit_code != 0 and "must be a number between 0 and 1, got 1.5" in r.stderr
    warnings = [line for line in r.stderr.splitlines() if "deprecated" in line]
    assert warnings == ["warning: annotator detect --min-score is deprecated; use --min-prob"]
    r = runner.invoke(app, ["detect", str(clip), "--min-prob", "0.8", "--min-score", "0.8",
                            "--project", str(ws)])
    assert r.exit_code == 2 and r.stderr.strip() == \
        "error: give --min-prob only (--min-score is its old name)"
    assert "--min-score" not in cli("detect", "--help").output  # hidden; --min-prob shown
    assert "--min-prob" in cli("detect", "--help").output


def test_python_m_pipelines_cli_is_the_same_command(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "init", "-p", str(tmp_path / "ws"),
                        "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["created"] is True
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "stats", "-p",
                        str(tmp_path / "nowhere")], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
