"""Job: read a Label Studio export (JSON or JSON-MIN) of tasks made by ``export --format
labelstudio`` back into the workspace.

A label is added only where the crop has none yet: the Label Studio user (by e-mail) becomes a
non-login account, the label's method is ``import``. An annotation that disagrees with the crop's
current label is reported as a conflict and changes nothing (Review and relabel decide); one that
agrees, or that this user already gave, is not counted again. Running the same file twice adds
nothing the second time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from annotator.data import crop_queue, export_reads, reports
from annotator.service.auth import system_user
from annotator.data.db import Role, get_annotator
from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace

MAX_BYTES = 512 * 1024 * 1024  # a Label Studio export larger than this is not one of ours
NAME_LEN = 100  # annotators.name


@dataclass(kw_only=True)
class ImportLSOptions:
    file: Path


@dataclass
class ImportLSReport:
    format: str = ""
    tasks: int = 0
    annotations: int = 0
    added: int = 0
    unchanged: int = 0  # agrees with the current label, or this user's label is already here
    conflicts: list[dict] = field(default_factory=list)  # crop_id, current, proposed, annotator
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    annotators: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Vote:
    crop_id: int
    sha256: str | None
    value: str
    email: str


def parse(data) -> tuple[str, list[Vote], dict[str, int], int]:
    """``(format, votes, skipped, tasks)`` of a Label Studio export: JSON (tasks with
    ``annotations``) or JSON-MIN (one flat object per annotation, the choice under the control's
    name and the user's e-mail under ``annotator``). Pure: no database."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise InputError("not a Label Studio export: expected a JSON list of tasks")
    skipped: dict[str, int] = {}

    def skip(why):
        skipped[why] = skipped.get(why, 0) + 1

    full = any("annotations" in t or "data" in t for t in data)
    votes = []
    for t in data:
        task = t.get("data", {}) if full else t
        crop_id = _int(task.get("crop_id"))
        if crop_id is None:
            skip("no crop_id (not a task of this tool)")
            continue
        sha = task.get("sha256") if isinstance(task.get("sha256"), str) else None
        if not full:
            value = _choice_min(t.get("label"))
            if value is None:
                skip("no choice")
                continue
            votes.append(Vote(crop_id, sha, value, _email(t.get("annotator"))))
            continue
        for ann in t.get("annotations") or []:
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                skip("cancelled")
                continue
            value = _choice(ann.get("result"))
            if value is None:
                skip("no choice")
                continue
            votes.append(Vote(crop_id, sha, value, _email(ann.get("completed_by"),
                                                          ann.get("created_username"))))
    return ("json" if full else "json-min"), votes, skipped, len(data)


def run(ws: Workspace, opts: ImportLSOptions, progress: ProgressFn = silent) -> ImportLSReport:
    path = Path(opts.file)
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"{path} is larger than {MAX_BYTES // 2**20} MB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not JSON ({exc.__class__.__name__})") from None
    fmt, votes, skipped, tasks = parse(data)
    rep = ImportLSReport(format=fmt, tasks=tasks, annotations=len(votes), skipped=skipped)
    allowed = set(ws.config.label_values)
    with ws.session() as s:  # one transaction: a failed import adds nothing
        ids = sorted({v.crop_id for v in votes})
        known = {int(r.crop_id): r.sha256 for r in export_reads.crop_files(s, ids).itertuples()}
        current = reports.current_values(s, ids)
        users: dict[str, int] = {}
        mine = {}  # (crop, user) -> value given earlier by that user
        for i, v in enumerate(votes):
            if v.value not in allowed:
                _count(rep.skipped, f"label {v.value!r} is not a label of this workspace")
                continue
            if v.crop_id not in known or (v.sha256 and known[v.crop_id] != v.sha256):
                _count(rep.skipped, "crop not in this workspace")
                continue
            uid = users.get(v.email) or users.setdefault(v.email, _account(s, v.email))
            if (v.crop_id, uid) not in mine:
                mine[(v.crop_id, uid)] = export_reads.active_value(s, uid, v.crop_id)
            given = mine[(v.crop_id, uid)]
            now = current.get(v.crop_id)
            if given == v.value or now == v.value:
                rep.unchanged += 1
            elif now is not None or given is not None:
                rep.conflicts.append({"crop_id": v.crop_id, "current": now or given,
                                      "proposed": v.value, "annotator": v.email})
            else:
                crop_queue.import_labels(s, uid, {v.crop_id: v.value}, sampling="labelstudio")
                current[v.crop_id] = mine[(v.crop_id, uid)] = v.value
                rep.added += 1
            if i % 500 == 0:
                progress(i, len(votes), f"{rep.added} added", stage="import")
        rep.annotators = sorted(users)
    progress(len(votes), len(votes), f"{rep.added} added, {len(rep.conflicts)} conflicts",
             stage="import")
    return rep


def _account(s, email: str) -> int:
    """The non-login account of a Label Studio user; never one of the tool's people (a file
    cannot put labels in a person's name)."""
    name = email[:NAME_LEN]
    user = get_annotator(s, name)
    if user is not None and user.role != Role.SYSTEM:
        name = f"labelstudio:{email}"[:NAME_LEN]
    return system_user(s, name).id


def _count(d: dict, key: str) -> None:
    d[key] = d.get(key, 0) + 1


def _int(v) -> int | None:
    try:
        return int(v) if not isinstance(v, bool) and v is not None else None
    except (TypeError, ValueError):
        return None


def _choice(result) -> str | None:
    for r in result or []:
        if isinstance(r, dict) and r.get("type") == "choices":
            choices = (r.get("value") or {}).get("choices") or []
            if len(choices) == 1 and isinstance(choices[0], str):
                return choices[0]
    return None


def _choice_min(v) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("choices"), list) and len(v["choices"]) == 1:
        return v["choices"][0] if isinstance(v["choices"][0], str) else None
    return None


def _email(completed_by, created_username=None) -> str:
    """Label Studio's user e-mail: ``completed_by`` is an object with ``email`` in older exports,
    an id in newer ones, where ``created_username`` reads " e-mail, id"."""
    if isinstance(completed_by, dict) and isinstance(completed_by.get("email"), str):
        return completed_by["email"].strip()
    if isinstance(completed_by, str) and completed_by.strip():
        return completed_by.strip()
    if isinstance(created_username, str) and created_username.strip(" ,"):
        return created_username.split(",")[0].strip()
    return f"labelstudio-user-{completed_by}" if completed_by is not None else "labelstudio"


__all__ = ["ImportLSOptions", "ImportLSReport", "Vote", "parse", "run"]
