"""Job: the whole loop in one call (what the UI's "Retrain now" runs).

build-dataset -> train -> promote if at least as good as the active model on the frozen
validation set (the candidate's figure comes from training, not a second scoring) -> score the
crops the active model has not scored yet, once: a promotion scores them before it activates
the new model, else the active model scores what it has not. A cancelled or failed training leaves no dataset
version behind (a dataset version is its manifest plus hard links, see build_dataset).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from annotator.core.config import check_options
from annotator.core.progress import ProgressFn, silent, under
from annotator.service.workspace import Workspace
from pipelines import build_dataset, promote, score, train
from pipelines.common import registry

STAGES = {"dataset": 0.1, "train": 0.75, "promote": 0.1, "score": 0.05}  # shares of the job


@dataclass(kw_only=True)
class RetrainOptions:
    epochs: int | None = None  # defaults: config.training
    batch_size: int | None = None
    lr: float | None = None
    init: str = "active"  # active | none | VERSION
    synthetic_masks: Path | None = None  # folder of RGBA mask PNGs
    val_fraction: float | None = None
    force: bool = False  # promote even if worse
    score: bool = True  # score what the active model has not scored yet, at the end


@dataclass
class RetrainReport:
    dataset: dict
    train: dict
    promote: dict
    score: dict | None
    active: str | None
    seconds: float = 0.0


def run(ws: Workspace, opts: RetrainOptions, progress: ProgressFn = silent) -> RetrainReport:
    t0 = time.perf_counter()
    # Checked before the dataset is built: a bad value leaves nothing behind.
    check_options(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                  val_fraction=opts.val_fraction)
    built = build_dataset.run(ws, build_dataset.BuildOptions(val_fraction=opts.val_fraction),
                              under(progress, "dataset"))
    try:
        trained = train.run(ws, train.TrainOptions(
            dataset=built.name, epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
            init=opts.init, synthetic_masks=opts.synthetic_masks), under(progress, "train"))
    except BaseException:  # cancelled (the runner's JobCancelled) or failed: leave nothing
        build_dataset.discard(ws, built.name)
        raise
    # labeled crops too: Review checks every label (imported ones included) against it. A
    # promotion scores before it activates; that pass is the retrain's scoring, not a second one.
    promoted, scored_rep = promote.promote_and_score(
        ws, promote.PromoteOptions(version=trained.version, force=opts.force),
        under(progress, "promote"), candidate_val=trained.val, labeled=opts.score)
    active_version = registry.get(ws)
    active = active_version.name
    scored = None
    # An active version of imported predictions has no weights to score with: its predictions
    # are all it has (pipelines.import_predictions), so the step is left out, not failed.
    if opts.score and active_version.path:
        if scored_rep is None:  # not promoted, or nothing was left to score
            scored_rep = score.run(ws, score.ScoreOptions(labeled=True), under(progress, "score"))
        else:  # the stage is done: say so, so the job's bar ends at its end
            under(progress, "score")(1, 1, f"{scored_rep.scored} scored before the promotion")
        scored = asdict(scored_rep)
    return RetrainReport(dataset=asdict(built), train=asdict(trained), promote=asdict(promoted),
                         score=scored, active=active, seconds=round(time.perf_counter() - t0, 2))
