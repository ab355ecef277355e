"""Job: label the crops the active model is sure enough of, with an audited error bound.

Per predicted class, the lowest probability threshold whose 95% error bound, measured on
people's labels from the random share (``annotator.core.audit``), is <= ``max_error``; the active
model's unlabeled crops above it get ``auto`` labels (model version and probability recorded).
A share of them (``[autolabel] audit_share``) stays in the queue as ordinary crops: people's
labels there measure the auto labels' error. Every run first withdraws (makes inactive, never
deletes) the auto labels the active model no longer backs: another version's that it disagrees
with, and its own below a threshold that rose because the audit's bound did.

Refuses (``InputError``, one line) when no class has enough audit yet, saying how many more
random-share labels it needs; what it withdrew stays withdrawn. The pass itself is
:mod:`pipelines.common.autolabeling` (every promotion runs it too).
"""
from __future__ import annotations

from dataclasses import dataclass

from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common.autolabeling import AutolabelReport, autolabel


@dataclass(kw_only=True)
class AutolabelOptions:
    max_error: float | None = None  # None: [autolabel] max_error
    dry_run: bool = False  # report what it would do, change nothing


def run(ws: Workspace, opts: AutolabelOptions, progress: ProgressFn = silent) -> AutolabelReport:
    """The auto-labeling pass (:func:`pipelines.common.autolabeling.autolabel`) with the job's
    options."""
    return autolabel(ws, max_error=opts.max_error, dry_run=opts.dry_run, progress=progress)


def summary(r: AutolabelReport) -> str:
    """The CLI's few lines: per class the threshold, crops, audited error and bound."""
    verb = "would label" if r.dry_run else "labeled"
    lines = [f"{r.model}: {verb} {r.labeled} crops ({r.audit_crops} also served to people), "
             f"{'would withdraw' if r.dry_run else 'withdrew'} {r.withdrawn}; "
             f"audit: {r.audited} random-share labels, max error {r.max_error:g}"]
    for c in r.classes:
        t = "refused" if c["threshold"] is None else f"p >= {c['threshold']:g}"
        err = "-" if c["error"] is None else f"{c['error']:.4f}"
        lines.append(f"  {c['class']}: {t}, {c['crops']} crops, audited {c['audited']}, "
                     f"error {err}, bound {c['bound']:.4f}"
                     + (f", needs {c['needed']} more random-share labels" if c["needed"] else ""))
    if r.refused:
        lines.append(r.refused)
    return "\n".join(lines)
