"""The pure parts of export and import: frame splits, box clipping, Label Studio parsing,
imported probabilities, agreement."""
import numpy as np
import pandas as pd
import pytest

from annotator.core.errors import InputError
from pipelines.export.datasheet import agreement
from pipelines.export.formats import clip_box, frame_split, labeling_config
from pipelines.import_labelstudio import Vote, parse
from pipelines.import_predictions import probabilities


def test_frame_split_never_puts_a_validation_head_in_training():
    assert frame_split(["train", "val", "train"]) == "val"
    assert frame_split(["train", "unassigned"]) == "train"
    assert frame_split([]) == "unassigned"


def test_clip_box_cuts_to_the_image_and_drops_what_is_outside():
    assert clip_box(-5, 10, 20, 30, 100, 50) == (0.0, 10.0, 20.0, 30.0)
    assert clip_box(90, 40, 130, 70, 100, 50) == (90.0, 40.0, 100.0, 50.0)
    assert clip_box(120, 10, 140, 20, 100, 50) is None


def test_parse_label_studio_json_and_json_min():
    full = [{"id": 1, "data": {"image": "x", "crop_id": 7, "sha256": "ab"}, "annotations": [
        {"completed_by": 3, "created_username": " ann@x.org, 3",
         "result": [{"type": "choices", "value": {"choices": ["mask"]}}]},
        {"completed_by": {"id": 4, "email": "b@x.org"}, "was_cancelled": False,
         "result": [{"type": "choices", "value": {"choices": ["no_mask"]}}]},
        {"completed_by": 5, "was_cancelled": True, "result": []}]},
        {"id": 2, "data": {"image": "y"}, "annotations": []}]
    fmt, votes, skipped, tasks = parse(full)
    assert (fmt, tasks) == ("json", 2)
    assert votes == [Vote(7, "ab", "mask", "ann@x.org"), Vote(7, "ab", "no_mask", "b@x.org")]
    assert skipped == {"cancelled": 1, "no crop_id (not a task of this tool)": 1}
    fmt, votes, _, _ = parse([{"crop_id": 9, "label": "mask", "annotator": "m@x.org", "id": 1},
                              {"crop_id": 10, "label": {"choices": ["no_mask"]}, "annotator": "m@x.org"}])
    assert fmt == "json-min" and [v.value for v in votes] == ["mask", "no_mask"]
    with pytest.raises(InputError):
        parse("not a list")


def test_probabilities_from_columns_or_label_and_score():
    cls = ["mask", "no_mask"]
    p = probabilities(pd.DataFrame({"mask": [0.2, 0.6], "no_mask": [0.8, 0.2]}), cls)
    assert np.allclose(p, [[0.2, 0.8], [0.75, 0.25]])
    p = probabilities(pd.DataFrame({"label": ["no_mask", "mask"], "score": [0.9, 0.6]}), cls)
    assert np.allclose(p, [[0.1, 0.9], [0.6, 0.4]])
    for bad in (pd.DataFrame({"label": ["cat"]}), pd.DataFrame({"mask": [-1.0], "no_mask": [1.0]}),
                pd.DataFrame({"x": [1]})):
        with pytest.raises(InputError):
            probabilities(bad, cls)


def test_agreement_unanimous_and_pairwise():
    votes = pd.DataFrame({"crop_id": [1, 1, 2, 2, 2], "value": ["a", "a", "a", "b", "a"]})
    assert agreement(votes) == {"crops": 2, "unanimous": 0.5, "pairwise": round((1 + 1 / 3) / 2, 4)}
    assert agreement(votes.iloc[:0])["crops"] == 0


def test_labeling_config_names_every_class():
    xml = labeling_config(["mask", "no_mask"])
    assert '<Choice value="mask"/>' in xml and 'name="label"' in xml and 'value="$image"' in xml


def test_read_frames_gives_what_read_frame_gives(tmp_path):
    """One open per video, grabbing forward or seeking: the same pixels as one seek per frame."""
    from annotator.media import video
    from tests.app.factory import write_footage

    path = str(write_footage(tmp_path / "v.avi", frames=120, size=(64, 48)))
    want = [0, 3, 4, 60, 61, 119, 200]  # near, far, and past the end
    got = dict(video.read_frames(path, kind="video", indices=want[::-1]))
    assert sorted(got) == want and got[200] is None
    for i in want[:-1]:
        assert np.array_equal(got[i], video.read_frame(path, kind="video", index=i)), i
