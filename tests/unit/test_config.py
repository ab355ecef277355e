"""config.toml keys renamed because one name meant three things: the new keys are read, the old
ones still work with one warning line, and a file never gets both."""
import tomllib

import pytest

from annotator.core import config
from annotator.core.config import Config, dump_config, parse_config
from annotator.core.errors import InputError, WorkspaceError


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(config, "_warned", set())


def test_batch_size_names_only_the_training_batch():
    cfg = parse_config(tomllib.loads(
        "[sampling]\nclaim_size = 7\n[training]\nbatch_size = 32\n[extract]\nframes_per_call = 2\n"))
    assert (cfg.sampling.claim_size, cfg.training.batch_size, cfg.extract.frames_per_call) == (7, 32, 2)
    text = dump_config(Config())
    assert "claim_size = 20" in text and "frames_per_call = 4" in text
    assert text.count("batch_size") == 1  # [training] only
    assert parse_config(tomllib.loads(text)) == Config()


def test_old_keys_still_work_with_one_warning_each(capsys):
    old = tomllib.loads("[sampling]\nbatch_size = 9\n[extract]\nbatch_size = 3\n")
    cfg = parse_config(old, where="ws/config.toml")
    assert (cfg.sampling.claim_size, cfg.extract.frames_per_call) == (9, 3)
    assert cfg.training.batch_size == 16  # untouched by the other sections' old key
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "warning: ws/config.toml: sampling.batch_size is deprecated; use sampling.claim_size",
        "warning: ws/config.toml: extract.batch_size is deprecated; use extract.frames_per_call"]
    parse_config(old, where="ws/config.toml")  # read again (every page rerun): no new line
    assert capsys.readouterr().err == ""


def test_old_key_is_checked_by_its_own_name_and_never_beside_the_new_one():
    with pytest.raises(WorkspaceError, match="extract.batch_size must be an integer between 1 and 256"):
        parse_config({"extract": {"batch_size": 0}})
    with pytest.raises(WorkspaceError, match="sampling.batch_size is the old name of sampling.claim_size"):
        parse_config({"sampling": {"batch_size": 5, "claim_size": 6}})


def test_detect_threshold_has_its_own_option_rule():
    config.check_options(min_prob=0.9)
    with pytest.raises(InputError, match="--min-prob must be a number between 0 and 1"):
        config.check_options(min_prob=1.5)
