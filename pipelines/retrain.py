"""Job: the whole loop in one call (what the UI's "Retrain now" runs).

build-dataset -> train -> evaluate on the frozen validation set -> promote if at least as good
as the active model -> score the unlabeled crops with the (possibly new) active model.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from annotator import db
from annotator.progress import ProgressFn, silent
from annotator.workspace import Workspace
from pipelines import build_dataset, evaluate, score, train


@dataclass
class RetrainOptions:
    build: build_dataset.BuildOptions = field(default_factory=build_dataset.BuildOptions)
    train: train.TrainOptions = field(default_factory=train.TrainOptions)
    force: bool = False  # promote even if worse
    score: bool = True


@dataclass
class RetrainReport:
    dataset: dict
    train: dict
    promote: dict
    score: dict | None
    active: str | None
    seconds: float = 0.0


def run(ws: Workspace, opts: RetrainOptions, progress: ProgressFn = None) -> RetrainReport:
    progress = progress or silent
    t0 = time.perf_counter()

    def stage(name):
        return lambda d, t, m="": progress(d, t, f"{name}: {m}")

    built = build_dataset.run(ws, opts.build, stage("dataset"))
    opts.train.dataset = built.name
    trained = train.run(ws, opts.train, stage("train"))
    promoted = evaluate.promote(ws, trained.version, force=opts.force)
    scored = None
    with ws.read_session() as s:
        active = db.active_model(s)
        active_name = active.name if active is not None else None
    if opts.score and active_name is not None:
        scored = asdict(score.run(ws, score.ScoreOptions(), stage("score")))
    return RetrainReport(dataset=asdict(built), train=asdict(trained), promote=asdict(promoted),
                         score=scored, active=active_name,
                         seconds=round(time.perf_counter() - t0, 2))
