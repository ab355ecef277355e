from annotator.data.crop_queue import crop_status
from annotator.core.label_rules import majority


def test_crop_status_needs_enough_decisive_votes():
    assert crop_status([], 1) == "unlabeled"
    assert crop_status(["mask"], 1) == "labeled"
    assert crop_status(["mask"], 2) == "unlabeled"
    assert crop_status(["mask", "no_mask"], 2) == "labeled"
    assert crop_status(["not_a_face"], 1) == "not_a_face"
    assert crop_status(["skip"], 1) == "skipped"
    # A skip does not count as a vote when another annotator still has to decide.
    assert crop_status(["skip"], 2) == "unlabeled"
    assert crop_status(["skip", "mask"], 1) == "labeled"


def test_majority_leaves_ties_out():
    assert majority(["mask", "mask", "no_mask"]) == "mask"
    assert majority(["mask", "no_mask"]) is None
    assert majority([]) is None
