"""The team's labeling instructions: a Markdown file in the workspace, shown on the Label page
and edited by an admin.
"""
from __future__ import annotations

from annotator.service.workspace import Workspace


INSTRUCTIONS_FILE = "instructions.md"  # in the workspace: the team's labeling rules, Markdown


MAX_INSTRUCTIONS = 20_000  # characters


DEFAULT_INSTRUCTIONS = """\
**mask**: nose and mouth covered by a mask (cloth, surgical, N95). **no_mask**: a face with
nose and mouth visible, a mask under the chin counts as no_mask. **not a face**: the back of a
head, a sign, a blur. **skip**: you cannot tell (too small, too dark) — someone else decides.
An admin can change this text on the Users page.
"""


def instructions(ws: Workspace) -> str:
    """The workspace's instructions for annotators (Markdown), or the default text."""
    path = ws.root / INSTRUCTIONS_FILE
    try:
        return path.read_text(encoding="utf-8")[:MAX_INSTRUCTIONS]
    except (OSError, UnicodeDecodeError):
        return DEFAULT_INSTRUCTIONS


def save_instructions(ws: Workspace, text: str) -> None:
    """Replace the instructions (written whole: a reader never sees half a file)."""
    import os

    from annotator.core.errors import InputError

    if len(text) > MAX_INSTRUCTIONS:
        raise InputError(f"instructions are at most {MAX_INSTRUCTIONS:,} characters "
                         f"({len(text):,} given)")
    path = ws.root / INSTRUCTIONS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
