"""Paths typed on the Extract page are only ever paths: a line that looks like a command-line
option is refused with a message, and no job (and no option) comes of it."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from annotator.data import db
from annotator.core.errors import InputError
from pipelines import extract
from pipelines.cli import runner
from tests.app import factory
from tests.app.test_pages import signed_in


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 5) as ws:
        yield ws


def jobs_count(ws) -> int:
    with ws.read_session() as s:
        return s.scalar(select(func.count()).select_from(db.Job)) or 0


@pytest.mark.parametrize("lines", [
    "--checkpoint=/tmp/x.pt",
    "{video}\n--checkpoint=/tmp/x.pt",  # a real path next to it does not carry it through
    "{video} --checkpoint=/tmp/x.pt",  # nor on the same line
])
def test_an_option_typed_as_a_path_is_refused_and_starts_nothing(ws, tmp_path, lines):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    (tmp_path / "x.pt").write_bytes(b"a checkpoint that must never be loaded")
    at = signed_in(ws, "root", "admin_extract.py")
    at.text_area(key="extract_paths").input(lines.format(video=video)).run()
    at.button(key="extract_start").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "no such file or folder on the server" in errors[0]
    assert "--checkpoint=/tmp/x.pt" in errors[0]
    assert jobs_count(ws) == 0 and not at.info  # no "started job" message
    assert not (ws.root / "uploads").exists()


def test_options_the_page_does_not_offer_cannot_reach_a_job(ws, tmp_path):
    """What a crafted request could try past the page: the runner refuses it."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    for field, value in (("checkpoint", str(tmp_path / "x.pt")), ("long_edge", 9999),
                         ("workers", 64)):
        opts = extract.ExtractOptions(sources=[str(video)], **{field: value})
        with pytest.raises(InputError, match=f"cannot set {field!r}"):
            runner.submit(ws, "extract", opts, started_by="root")
    with pytest.raises(InputError, match="is not a path"):
        runner.submit(ws, "extract", extract.ExtractOptions(sources=["--checkpoint=/tmp/x.pt"]))
    assert jobs_count(ws) == 0
