"""Split logic: grouped, stratified, sticky; duplicate and near-duplicate grouping."""
import numpy as np
import pytest

from annotator.core.dataset import assign_split, dhash, group_ids, near_duplicate_pairs


def _crops(n_tracks=60, per_track=5, seed=0):
    rng = np.random.default_rng(seed)
    source, track, sha, labels = [], [], [], []
    for t in range(n_tracks):
        lab = int(rng.random() < 0.3)  # imbalanced: 30% class 1
        for k in range(per_track):
            source.append(f"video{t % 4}")
            track.append(t)
            sha.append(f"{t}-{k}")
            labels.append(lab)
    return source, track, sha, np.array(labels)


def test_no_group_on_both_sides_and_stratified():
    source, track, sha, y = _crops()
    g = group_ids(source, track, sha)
    assert len(np.unique(g)) == 60
    val = assign_split(y, g, val_fraction=0.2, seed=0)
    for gid in np.unique(g):
        assert len(set(val[g == gid])) == 1
    for c in (0, 1):
        share = val[y == c].mean()
        assert 0.1 <= share <= 0.3, (c, share)


def test_exact_and_near_duplicates_are_grouped():
    source = ["folder"] * 6
    track = [None, None, None, None, None, float("nan")]
    sha = ["a", "b", "a", "c", "d", "e"]  # 0 and 2 identical bytes
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 4, dtype=np.uint64)
    hashes = np.array([base[0], base[1], base[2], base[3],
                       base[3] ^ np.uint64(0b1011), base[1] ^ np.uint64(0xFF)], dtype=np.uint64)
    g = group_ids(source, track, sha, hashes=hashes, max_distance=4)
    assert g[0] == g[2]  # same sha256
    assert g[3] == g[4]  # 3 bits apart
    assert g[1] != g[5]  # 8 bits apart
    assert len({g[0], g[1], g[3], g[5]}) == 4
    whole = group_ids(["v1", "v1", "v2"], [1, 2, 3], ["x", "y", "z"], by="source")
    assert whole[0] == whole[1] != whole[2]


def test_near_duplicate_pairs_match_brute_force():
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2**63, 300, dtype=np.uint64)
    h[150:200] = h[:50] ^ (np.uint64(1) << rng.integers(0, 64, 50).astype(np.uint64))
    h[200:210] = h[:10] ^ np.uint64(0b11111)  # 5 bits: not within 4
    got = {tuple(p) for p in near_duplicate_pairs(h, max_distance=4)}
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= 4, 1))
    assert got == set(zip(i.tolist(), j.tolist()))
    assert len(got) >= 50


def test_val_is_sticky_across_versions():
    source, track, sha, y = _crops(40)
    g = group_ids(source, track, sha)
    v1 = assign_split(y, g, val_fraction=0.2, seed=0)
    prev = np.where(v1, "val", "train")
    # Version 2: 40 more tracks, one more crop for an existing val track, another seed.
    s2, t2, h2, y2 = _crops(80, seed=0)
    s2, t2, h2 = list(s2) + [source[np.flatnonzero(v1)[0]]], list(t2) + [track[np.flatnonzero(v1)[0]]], list(h2) + ["new"]
    y2 = np.r_[y2, y[np.flatnonzero(v1)[0]]]
    prev2 = list(prev) + [None] * (len(y2) - len(prev))
    g2 = group_ids(s2, t2, h2)
    v2 = assign_split(y2, g2, val_fraction=0.2, seed=5, previous=prev2)
    assert v2[: len(v1)][v1].all()  # every earlier val crop is still in val
    assert not v2[: len(v1)][~v1].any()  # and earlier training crops stay in training
    assert v2[-1]  # the new crop of a val track joins it
    assert 0.1 < v2[len(v1):-1].mean() < 0.3  # new tracks split at about the fraction


def test_dhash_flags_near_copies():
    rng = np.random.default_rng(0)
    img = rng.random((8, 9)) * 255
    noisy = img + rng.normal(0, 1, img.shape)
    other = rng.random((8, 9)) * 255
    h = dhash(np.stack([img, noisy, other]))
    assert h.dtype == np.uint64
    assert int(np.bitwise_count(h[0] ^ h[1])) <= 4 < int(np.bitwise_count(h[0] ^ h[2]))
    with pytest.raises(ValueError):
        dhash(np.zeros((1, 9, 9)))


def test_split_validation():
    with pytest.raises(ValueError):
        assign_split(np.zeros(3, int), np.arange(3), val_fraction=1.0)
    assert assign_split(np.zeros(0, int), np.zeros(0, int), val_fraction=0.2).size == 0


@pytest.mark.parametrize("seed", range(5))
def test_random_share_crops_go_to_validation_first_and_earlier_training_stays(seed):
    """The auto-label audit's random-share crops land in validation (so no model learns the
    crops that audit it) as far as val_fraction allows; a group already in training stays."""
    source, track, sha, y = _crops(100, seed=seed)
    g = group_ids(source, track, sha)
    rng = np.random.default_rng(seed)
    tracks = np.unique(g)
    random_tracks = rng.choice(tracks, size=10, replace=False)  # a 10% random share
    prefer = np.isin(g, random_tracks)
    earlier_train = random_tracks[0]  # one of them was in training before
    prev = np.where(g == earlier_train, "train", None)
    val = assign_split(y, g, val_fraction=0.2, seed=seed, previous=prev, prefer_val=prefer)
    assert val[prefer & (g != earlier_train)].all()
    assert not val[g == earlier_train].any()
    assert 0.1 <= val.mean() <= 0.3  # still about the fraction
    for gid in tracks:
        assert len(set(val[g == gid])) == 1


def test_when_every_crop_is_random_share_validation_keeps_its_fraction():
    source, track, sha, y = _crops(100)
    g = group_ids(source, track, sha)
    val = assign_split(y, g, val_fraction=0.2, seed=0, prefer_val=np.ones(len(y), bool))
    assert 0.15 <= val.mean() <= 0.25
    assert np.array_equal(val, assign_split(y, g, val_fraction=0.2, seed=0))
