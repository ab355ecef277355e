"""detect's classifier threshold has its own name and key: ``[detect] min_prob``; the old name
``min_score`` there is still read, with one deprecation line."""
from __future__ import annotations

import pytest

from annotator.core.config import Config, dump_config, parse_config
from annotator.core.errors import WorkspaceError


def test_min_prob_defaults_and_is_written_by_init():
    assert Config().detect.min_prob == 0.75
    assert "[detect]\nmin_prob = 0.75" in dump_config(Config())
    assert parse_config({"detect": {"min_prob": 0.6}}).detect.min_prob == 0.6


def test_the_old_key_is_read_with_one_deprecation_line(capsys):
    cfg = parse_config({"detect": {"min_score": 0.6}}, where="ws/config.toml")
    assert cfg.detect.min_prob == 0.6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: ws/config.toml: detect.min_score is deprecated; use detect.min_prob"]
    # the extract detector's min_score is another setting and stays where it was
    assert cfg.extract.min_score == -1.0


def test_min_prob_out_of_range_names_the_key():
    with pytest.raises(WorkspaceError, match="detect.min_prob"):
        parse_config({"detect": {"min_prob": 1.5}})
