"""Labeling cost on the five shared videos: human decisions per labeled crop for keys / tracks /
tracks+propagation / +auto, through the real labeling service.

``bench/label_cost.py`` measures the loop on the shared FACES (a pool of still photos, no
tracks); here the crops come from footage, so track decisions and propagation can pay off.
The five ``../shared/data/videos/*.mp4`` are extracted into one fresh workspace with the
product's defaults; a model trained for a few epochs on ``../shared/data/faces`` is registered,
promoted (it scores every crop) and the folder is copied once per policy. A simulated annotator
works the Label page's way (``annotator.service.labeling.claim`` of a few crops, the first card
decided, the batch topped up when half gone) and answers from the truth fixture:

* ``keys``: one key per crop (``labeling.submit``) until the queue is empty.
* ``tracks``: Shift+key (``labeling.submit_track``) when every open mate in the card's strip
  has the card's truth, else a key for that crop only (a mixed track costs extra keys).
* ``tracks+propagation``: as tracks with ``[autolabel] propagate`` on (agreeing mates get a
  ``propagated`` label, disputed ones are served first).
* ``+auto``: tracks+propagation, and ``annotator autolabel`` (``pipelines.autolabel``, default
  max error) tried every ``--auto-every`` human decisions once random-share labels exist; its
  refusal line is recorded as the result when it refuses.
* ``keys+propagation`` (extra): one key per crop with propagation on; under ``tracks`` the
  strip's Shift+key already labels the agreeing mates, so propagation only acts where the
  annotator declined the track key (mixed strips): this shows what it does on its own.
* ``keys-junk-first`` (extra): keys with ``[sampling] junk_last`` off, the order before the
  junk-last rule: the baseline of "decisions to 90% of the faces".

Decisions are counted as the product counts them (``annotator.data.label_cost.label_cost``);
machine labels (propagated / auto, undone ones left out) are checked against the truth.

The truth, ``bench/fixtures/five_videos_truth.csv``, was labeled once by looking at contact
sheets of the crops (``--contact-sheets DIR`` renders them). Rows are keyed by video, frame and
box in frame pixels and matched by IoU >= 0.5 within the same video and frame, so small numeric
differences across machines still match; crops without a match are counted and answered
``skip``. Labeling rule: ``mask`` / ``no_mask`` when a face is visible and its lower half
tells; ``not_a_face`` when no face shows (back of a head, hair, body, an object); ``skip`` when
a face is there but too small or blurred to tell (the product's skip key).

    nice python -m bench.label_cost_videos [--work DIR] [--epochs 3]
    nice python -m bench.label_cost_videos --contact-sheets DIR   # render crops to label

Measured on 2026-12-04, the default run with the junk-last rule (2 CPU cores): 111 crops, 0
without a truth match; v001, 3 epochs on 4065 shared faces, 0.82 accuracy on the 76 decidable
video crops ("to 90%": human decisions until 90% of the crops that end with a class have it):

    policy              decisions  per labeled  per crop  key  track  audit  propag.  error (n)  to 90%
    keys                      111       1.4605    1.0     111      0      0        0  -              89
    tracks                     53       0.6974    0.4775   19     92      0        0  -              39
    tracks+propagation         51       0.6623    0.4595   17     92      0        2  0.5 (2)        39
    +auto                      51       0.6623    0.4595   17     92      0        2  0.5 (2)        39
    keys+propagation           79       1.026     0.7117   78      0      1       32  0.0303 (33)    57
    keys-junk-first           111       1.4605    1.0     111      0      0        0  -             101

"per labeled" is the product's ``human_decisions_per_labeled_crop`` (crops labeled mask or
no_mask: 76; not_a_face and skip decisions cost but label nothing). ``autolabel`` refused
every time (13 random-share labels; at max error 0.01 it needs >= 765 more): on ~100 crops
``+auto`` is tracks+propagation. The wrong propagated label is in the eye-level pedestrians
video: a crop that shows no face, in a track whose other crops the model reads as no mask.
Training on the CPU is not bit-reproducible: the run of 2026-12-03 (110 crops, a model of 0.83)
gave keys 110, tracks 52, tracks+propagation 52 and keys+propagation 76 (35 propagated, 1 wrong).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

SHARED = Path(os.environ.get("ANNOTATOR_SHARED_DATA")
              or Path(__file__).resolve().parents[2] / "shared" / "data")
TRUTH = Path(__file__).resolve().parent / "fixtures" / "five_videos_truth.csv"
POLICIES = ("keys", "tracks", "tracks+propagation", "+auto", "keys+propagation", "keys-junk-first")
NO_JUNK_LAST = ("keys-junk-first",)  # [sampling] junk_last = false: the order before it
TRACKS = ("tracks", "tracks+propagation", "+auto")  # the annotator uses Shift+key
PROPAGATE = ("tracks+propagation", "+auto", "keys+propagation")  # [autolabel] propagate on
VALUES = ("mask", "no_mask", "not_a_face", "skip")
MIN_IOU = 0.5
HOLD = 5  # crops the Label page holds (pages/label.py: min(claim_size, 5))


# --- truth: read, match ---------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    video: str
    frame: int
    box: tuple[float, float, float, float]
    label: str


def read_truth(path: Path) -> list[Truth]:
    """Rows of the fixture; lines starting with ``#`` are comments (the labeling rule)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    out = []
    for r in csv.DictReader(lines):
        if r["label"] not in VALUES:
            raise ValueError(f"{path}: label {r['label']!r} is not one of {VALUES}")
        out.append(Truth(r["video"], int(r["frame_index"]),
                         tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")), r["label"]))
    return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_truth(crops: Sequence[tuple[str, int, Sequence[float]]], truth: Sequence[Truth],
                *, min_iou: float = MIN_IOU) -> list[str | None]:
    """The truth label of each ``(video, frame, box)``: the same video and frame, the row with
    the best IoU if it is >= ``min_iou``; None when nothing matches. Boxes, not file hashes:
    a decoder or resize that differs by a pixel elsewhere must not lose the truth."""
    by_frame: dict[tuple[str, int], list[Truth]] = {}
    for t in truth:
        by_frame.setdefault((t.video, t.frame), []).append(t)
    out = []
    for video, frame, box in crops:
        best = max(by_frame.get((video, int(frame)), []), key=lambda t: iou(t.box, box),
                   default=None)
        out.append(best.label if best is not None and iou(best.box, box) >= min_iou else None)
    return out


# --- the simulated annotator's choice -------------------------------------------------------


def use_track_key(value: str, mate_values: Sequence[str | None]) -> bool:
    """Shift+key only when the strip has open mates and every one of them has the card's truth:
    a person who sees one differing mate labels crop by crop."""
    return bool(mate_values) and all(v == value for v in mate_values)


# --- the workspace ----------------------------------------------------------------------------


def build_base(root: Path) -> Path:
    """Extract the five videos into a fresh workspace with the product's defaults (reused when
    ``root`` already holds a finished extraction)."""
    from annotator.service.workspace import Workspace
    from pipelines import extract

    done = root / "extracted.json"
    if done.is_file():
        return root
    videos = sorted((SHARED / "videos").glob("*.mp4"))
    if len(videos) != 5:
        raise SystemExit(f"expected 5 videos in {SHARED / 'videos'}, found {len(videos)}")
    ws = Workspace.init(root)
    t0 = time.perf_counter()
    rep = extract.run(ws, extract.ExtractOptions(sources=[str(v) for v in videos]))
    ws.dispose()
    done.write_text(json.dumps({"detector": rep.detector,
                                "seconds": round(time.perf_counter() - t0, 1)}))
    return root


def crop_rows(root: Path) -> list[dict]:
    """Every crop with its video name, frame, box and track, in (video, track, frame) order."""
    con = sqlite3.connect(root / "annotator.db")
    try:
        rows = con.execute(
            "select c.id, s.name, s.uri, c.frame_index, c.x1, c.y1, c.x2, c.y2, c.track_id, "
            "c.path from crops c join sources s on s.id = c.source_id "
            "order by s.name, c.track_id, c.frame_index, c.id").fetchall()
    finally:
        con.close()
    return [dict(id=r[0], video=r[1], uri=r[2], frame=r[3], box=(r[4], r[5], r[6], r[7]),
                 track=r[8], path=r[9]) for r in rows]


def contact_sheets(root: Path, out: Path, *, per_sheet: int = 20, tile: int = 200) -> int:
    """PNG sheets of numbered crops (upscaled) beside the frame around them, captioned with
    video, frame and track, plus ``template.csv`` to fill in. Returns the number of sheets."""
    import cv2
    import numpy as np

    from annotator.media import video as media_video

    out.mkdir(parents=True, exist_ok=True)
    rows = crop_rows(root)
    with (out / "template.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n", "video", "frame_index", "x1", "y1", "x2", "y2", "track", "label"])
        for n, r in enumerate(rows):
            w.writerow([n, r["video"], r["frame"], *(round(v, 1) for v in r["box"]),
                        r["track"], ""])

    def fit(img, size):
        h, wd = img.shape[:2]
        s = size / max(h, wd)
        img = cv2.resize(img, (max(1, int(wd * s)), max(1, int(h * s))),
                         interpolation=cv2.INTER_CUBIC)
        pad = np.full((size, size, 3), 40, np.uint8)
        pad[:img.shape[0], :img.shape[1]] = img
        return pad

    tiles = []
    for n, r in enumerate(rows):
        crop = cv2.imread(str(root / "crops" / r["path"]))  # ws.store's root
        crop = crop if crop is not None else np.zeros((8, 8, 3), np.uint8)
        frame = media_video.read_frame(r["uri"], kind="video", index=r["frame"])
        x1, y1, x2, y2 = (int(v) for v in r["box"])
        if frame is not None:
            bw, bh = x2 - x1, y2 - y1
            l, t = max(0, x1 - 2 * bw), max(0, y1 - 2 * bh)
            ctx = frame[t:y2 + 2 * bh, l:x2 + 2 * bw].copy()
            cv2.rectangle(ctx, (x1 - l, y1 - t), (x2 - l, y2 - t), (0, 200, 255), 1)
        else:
            ctx = np.zeros((8, 8, 3), np.uint8)
        cell = np.full((tile + 22, 2 * tile, 3), 255, np.uint8)
        cell[22:, :tile], cell[22:, tile:] = fit(crop, tile), fit(ctx, tile)
        cv2.putText(cell, f"#{n} {r['video'][:14]} f{r['frame']} t{r['track']} {x2 - x1}px",
                    (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        tiles.append(cell)
    cols = 4
    sheets = 0
    for start in range(0, len(tiles), per_sheet):
        part = tiles[start:start + per_sheet]
        part += [np.full_like(tiles[0], 255)] * (-len(part) % cols)
        grid = np.vstack([np.hstack(part[i:i + cols]) for i in range(0, len(part), cols)])
        cv2.imwrite(str(out / f"sheet_{sheets:02d}.png"), grid)
        sheets += 1
    return sheets


# --- the model ---------------------------------------------------------------------------------


def train_and_promote(root: Path, *, epochs: int, seed: int = 0) -> dict:
    """Train an OFMClassifier on the shared faces for a few epochs, register it in the workspace
    and promote it (the promotion scores every crop, then makes it active). Reused when done."""
    import numpy as np

    from annotator.media import images
    from annotator.service.workspace import Workspace
    from models.ofm import OFMClassifier
    from models.training import fit
    from pipelines import promote
    from pipelines.common import registry

    done = root / "model.json"
    if done.is_file():
        return json.loads(done.read_text())
    ws = Workspace.open(root)
    classes = list(ws.config.labels)
    paths, labels = images.read_image_folder(SHARED / "faces", classes)
    x = images.load_images(paths, workers=2)
    y = np.array([classes.index(v) for v in labels], np.int64)
    model = OFMClassifier(classes)
    hist = fit(model, x, y, None, None, epochs=epochs, batch_size=32, lr=5e-4, seed=seed)
    name = registry.register(ws, model, metrics={
        "source": "bench.label_cost_videos: ../shared/data/faces", "n_train": len(y),
        "epochs": epochs}, card="Trained by bench/label_cost_videos.py on the shared faces.")
    rep = promote.promote(ws, promote.PromoteOptions(version=name, force=True))
    ws.dispose()
    out = {"version": name, "trained_on": len(y), "epochs": epochs,
           "train_seconds": hist.seconds, "scored": rep.scored,
           "after_promote": (rep.autolabel or {}).get("refused", "ran")}
    done.write_text(json.dumps(out))
    return out


def model_accuracy(root: Path, truth_of: dict[int, str]) -> dict:
    """The active model against the truth on the crops that show a decidable face."""
    import numpy as np

    from annotator.data import model_reports
    from annotator.service.crop_cards import active_model
    from annotator.service.workspace import Workspace

    ws = Workspace.open(root)
    mv = active_model(ws)
    ids = [c for c, v in truth_of.items() if v in mv.classes]
    with ws.read_session() as s:
        got, probs, _ = model_reports.prediction_arrays(s, mv.id, ids)
    ws.dispose()
    y = np.array([mv.classes.index(truth_of[int(c)]) for c in got])
    pred = probs.argmax(1)
    recall = {c: round(float((pred[y == k] == k).mean()), 4) if (y == k).any() else None
              for k, c in enumerate(mv.classes)}
    return {"n": len(y), "accuracy": round(float((pred == y).mean()), 4) if len(y) else None,
            "recall": recall}


# --- the simulated annotator ------------------------------------------------------------------


@dataclass
class Tally:
    """What the simulated annotator did, beside what the database records."""

    keys: int = 0
    track_keys: int = 0
    declined_track: int = 0  # strips with open mates of another truth: keyed crop by crop
    refused: int = 0  # QueueError: taken meanwhile (a machine label, another gesture)
    # (value, crops it labeled) of each decision, in order
    values: list = field(default_factory=list)


def annotate(ws, uid: int, truth_of: dict[int, str], *, tracks: bool, seed: int, hold: int = HOLD,
             every: int | None = None, hook: Callable[[], None] | None = None) -> Tally:
    """Work the queue as the Label page does until it is empty: hold ``hold`` crops, decide the
    first card (Shift+key when ``tracks`` and :func:`use_track_key`), top up at half.
    ``hook`` runs after every ``every`` decisions (the +auto policy's autolabel)."""
    from annotator.core.errors import QueueError
    from annotator.service import labeling

    st, cards, decided, claims, last_hook = Tally(), [], set(), 0, 0
    for _ in range(100_000):
        if len(cards) <= hold // 2:
            more = labeling.claim(ws, uid, hold, seed=seed + claims)
            claims += 1
            have = {c.crop_id for c in cards} | decided
            cards += [c for c in more if c.crop_id not in have]
            if not cards:
                return st
        card = cards.pop(0)
        value = truth_of.get(card.crop_id, "skip")
        mates = [m for m in card.strip if m.decidable and m.crop_id not in decided]
        whole = tracks and use_track_key(value, [truth_of.get(m.crop_id) for m in mates])
        st.declined_track += bool(tracks and mates and not whole)
        try:
            if whole:
                done = labeling.submit_track(ws, uid, card, value)
                st.track_keys += 1
            else:
                labeling.submit(ws, uid, card.crop_id, value)
                done = [card.crop_id]
                st.keys += 1
        except QueueError:
            st.refused += 1
            done = [card.crop_id]
        st.values.append((value, len(done)))
        decided |= set(done) | {card.crop_id}
        cards = [c for c in cards if c.crop_id not in decided]
        n = st.keys + st.track_keys
        if hook is not None and every and n % every == 0 and n != last_hook:
            last_hook = n
            hook()
    raise RuntimeError("the queue did not empty")


def machine_errors(ws, truth_of: dict[int, str]) -> dict:
    """Machine labels (every one made and not withdrawn, audited ones included) against the
    truth, per kind. A crop whose truth is ``skip`` (an undecidable face) is counted apart;
    ``not_a_face`` counts as wrong, as in the product's audit."""
    from sqlalchemy import select

    from annotator.core import audit
    from annotator.data.db import Crop, Label, LabelKind, Source

    with ws.read_session() as s:
        rows = s.execute(select(Label.method, Label.crop_id, Label.value, Source.name,
                                Crop.frame_index, Crop.track_id)
                         .join(Crop, Crop.id == Label.crop_id)
                         .join(Source, Source.id == Crop.source_id)
                         .where(Label.method.in_(LabelKind.MACHINE),
                                Label.undone_at.is_(None))).all()
    out = {}
    for kind in (LabelKind.PROPAGATED, LabelKind.AUTO):
        mine = [r for r in rows if r[0] == kind]
        judged = [r for r in mine if truth_of.get(r[1], "skip") != "skip"]
        wrong = [r for r in judged if truth_of[r[1]] != r[2]]
        lo, hi = audit.interval(len(wrong), len(judged))
        out[kind] = {"labels": len(mine), "n": len(judged), "wrong": len(wrong),
                     "error": round(len(wrong) / len(judged), 4) if judged else None,
                     "interval": [round(lo, 4), round(hi, 4)],
                     "on_undecidable": len(mine) - len(judged),
                     "mistakes": [{"video": r[3], "frame": r[4], "track": r[5],
                                   "truth": truth_of[r[1]], "label": r[2]} for r in wrong]}
    return out


def run_policy(base: Path, dest: Path, policy: str, truth_of: dict[int, str], *, seed: int,
               auto_every: int) -> dict:
    """One policy on a fresh copy of the scored workspace; what it cost, as the product counts."""
    from annotator.core.config import dump_config
    from annotator.core.errors import InputError
    from annotator.data import label_cost, reports
    from annotator.data.db import Crop, count
    from annotator.service.auth import add_user
    from annotator.service.workspace import Workspace
    from pipelines import autolabel

    t0 = time.perf_counter()
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest)
    ws = Workspace.open(dest)
    ws.config.autolabel.propagate = policy in PROPAGATE
    ws.config.sampling.junk_last = policy not in NO_JUNK_LAST
    (dest / "config.toml").write_text(dump_config(ws.config))  # as `annotator` would read it
    with ws.session() as s:
        uid = add_user(s, "sim", "simulated-annotator", role="annotator").id
    tries: list[str] = []

    def run_autolabel():  # `annotator autolabel` with its defaults
        try:
            tries.append(autolabel.summary(autolabel.run(ws, autolabel.AutolabelOptions()))
                         .splitlines()[0])
        except InputError as exc:
            tries.append(str(exc))

    st = annotate(ws, uid, truth_of, tracks=policy in TRACKS, seed=seed,
                  every=auto_every if policy == "+auto" else None,
                  hook=run_autolabel if policy == "+auto" else None)
    if policy == "+auto":
        run_autolabel()  # once more on what is left (nothing, when the queue is empty)
    with ws.read_session() as s:
        cost = label_cost.label_cost(s)
        left = reports.unlabeled_count(s)
        crops = count(s, Crop)
    out = {
        "crops": crops, "queue_left": left, "human_decisions": cost["human_decisions"],
        "crops_labeled": cost["crops_labeled"], "labels_by_kind": cost["labels_by_kind"],
        "human_decisions_per_labeled_crop": cost["human_decisions_per_labeled_crop"],
        "human_decisions_per_crop": round(cost["human_decisions"] / crops, 4) if crops else None,
        "keys": st.keys, "track_keys": st.track_keys, "declined_track_key": st.declined_track,
        "refused_submits": st.refused, "machine": machine_errors(ws, truth_of),
        "decisions_to_90pct_of_faces": decisions_to(st.values, 0.9),
        "seconds": round(time.perf_counter() - t0, 1)}
    if policy == "+auto":
        refusals = [t for t in tries if t.startswith("autolabel refused")]
        out["autolabel"] = {"tries": len(tries), "refused": len(refusals),
                            "last": tries[-1] if tries else None}
    ws.dispose()
    return out


def decisions_to(values: list, share: float) -> int | None:
    """Human decisions until ``share`` of the crops that end up with a class (mask / no_mask)
    have it: how soon a team has its training data. Every policy empties the queue, so the
    junk it holds costs the same in the end; junk-last shows in when it is decided."""
    classes = [n if v not in ("not_a_face", "skip") else 0 for v, n in values]
    goal, done = share * sum(classes), 0
    for i, n in enumerate(classes, 1):
        done += n
        if done >= goal - 1e-9:
            return i
    return None


def truth_counts(rows: list[dict], labels: list[str | None]) -> dict:
    """``{video: {label: crops}}`` (None: no truth row matched)."""
    out: dict[str, dict[str, int]] = {}
    for r, v in zip(rows, labels):
        d = out.setdefault(r["video"], {})
        d[str(v)] = d.get(str(v), 0) + 1
    return out


def print_table(policies: dict) -> None:
    print(f"{'policy':<19} {'crops':>5} {'decisions':>9} {'labeled':>7} {'per labeled':>11} "
          f"{'per crop':>8} {'key':>4} {'track':>5} {'audit':>5} {'propag.':>7} {'auto':>4} "
          f"{'machine error (n)':>18} {'to 90% faces':>12}")
    for name, p in policies.items():
        k = p["labels_by_kind"]
        m = [x for x in p["machine"].values() if x["labels"]]
        err = " ".join(f"{x['error']}({x['n']})" for x in m) or "-"
        print(f"{name:<19} {p['crops']:>5} {p['human_decisions']:>9} {p['crops_labeled']:>7} "
              f"{p['human_decisions_per_labeled_crop']!s:>11} {p['human_decisions_per_crop']!s:>8} "
              f"{k.get('key', 0):>4} {k.get('track', 0):>5} {k.get('audit', 0):>5} "
              f"{k.get('propagated', 0):>7} {k.get('auto', 0):>4} {err:>18} "
              f"{p['decisions_to_90pct_of_faces']!s:>12}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None,
                    help="working folder (kept; its extraction and model are reused); "
                         "default: a temp folder")
    ap.add_argument("--contact-sheets", type=Path, default=None,
                    help="render the crops to label into this folder, then stop")
    ap.add_argument("--truth", type=Path, default=TRUTH)
    ap.add_argument("--epochs", type=int, default=3, help="the faces model's training epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--auto-every", type=int, default=10,
                    help="+auto: try `annotator autolabel` after every N human decisions")
    ap.add_argument("--policies", default=",".join(POLICIES))
    args = ap.parse_args()
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-videocost-")
        args.work = Path(tmp.name)
    t0 = time.perf_counter()
    try:
        base = build_base(args.work / "base")
        if args.contact_sheets is not None:
            n = contact_sheets(base, args.contact_sheets)
            print(f"{n} sheets and template.csv in {args.contact_sheets}")
            return 0
        rows = crop_rows(base)
        labels = match_truth([(r["video"], r["frame"], r["box"]) for r in rows],
                             read_truth(args.truth))
        truth_of = {r["id"]: v for r, v in zip(rows, labels) if v is not None}
        unmatched = sum(v is None for v in labels)
        model = train_and_promote(base, epochs=args.epochs, seed=args.seed)
        model["on_video_crops"] = model_accuracy(base, truth_of)
        extracted = json.loads((base / "extracted.json").read_text())
        policies = {}
        for name in args.policies.split(","):
            policies[name] = run_policy(base, args.work / name.replace("+", "plus_"), name,
                                        truth_of, seed=args.seed, auto_every=args.auto_every)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"{len(rows)} crops from {len({r['video'] for r in rows})} videos, "
          f"{unmatched} without a truth match; model {model['version']} "
          f"({model['epochs']} epochs on {model['trained_on']} shared faces), accuracy on the "
          f"decidable video crops {model['on_video_crops']['accuracy']} "
          f"(n={model['on_video_crops']['n']})")
    print_table(policies)
    for name, p in policies.items():
        if "autolabel" in p:
            print(f"{name}: autolabel tried {p['autolabel']['tries']} times, refused "
                  f"{p['autolabel']['refused']}; last: {p['autolabel']['last']}")
    keys = policies.get("keys", {}).get("human_decisions")
    for p in policies.values():
        p["decisions_vs_keys"] = round(p["human_decisions"] / keys, 4) if keys else None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    print(json.dumps({"bench": "label_cost_videos", "baseline": "keys", "crops": len(rows),
                      "unmatched": unmatched, "truth": truth_counts(rows, labels),
                      "extract": extracted, "model": model, "hold": HOLD,
                      "auto_every": args.auto_every, "seed": args.seed, "load_1min": load,
                      "seconds": round(time.perf_counter() - t0, 1), "policies": policies}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
