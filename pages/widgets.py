"""Small browser-side pieces shared by the pages: label colours, a shortcut overlay, the grid.

The overlay and the grid are ``st.components.v2`` components (inline JavaScript in the page):
what they do on a key press happens in the browser, with no round trip to the server.
"""
from __future__ import annotations

import html
import json
from typing import Sequence

import streamlit as st

from annotator.config import NOT_A_FACE, SKIP

PALETTE = ["#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#00838f"]
SPECIAL_COLOURS = {NOT_A_FACE: "#616161", SKIP: "#9e9e9e"}


def colour_of(value: str, labels: Sequence[str]) -> str:
    """One colour per decision, the same on every page (mask green, no_mask red, ...)."""
    if value in SPECIAL_COLOURS:
        return SPECIAL_COLOURS[value]
    labels = list(labels)
    return PALETTE[labels.index(value) % len(PALETTE)] if value in labels else "#757575"


def button_colours(keys: dict[str, str]) -> None:
    """Colour Streamlit buttons by their widget key (``{key: css colour}``)."""
    rules = "".join(
        f".st-key-{k} button {{background:{c};border-color:{c};color:#fff}}"
        f".st-key-{k} button:hover {{filter:brightness(1.12);color:#fff;border-color:{c}}}"
        for k, c in keys.items())
    st.html(f"<style>{rules}</style>")


_HELP_JS = """
export default function ({ parentElement, data }) {
  const box = document.createElement("div");
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-label", "keyboard shortcuts");
  box.className = "fma-help";
  box.style.cssText = "display:none;position:fixed;top:4rem;right:2rem;z-index:1000;" +
    "background:var(--st-background-color,#fff);color:var(--st-text-color,#222);" +
    "border:1px solid #999;border-radius:8px;padding:1rem 1.4rem;box-shadow:0 4px 24px #0004";
  box.innerHTML = data.html;
  parentElement.appendChild(box);
  const onKey = (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (e.key === "?") { box.style.display = box.style.display === "none" ? "block" : "none"; }
    else if (e.key === "Escape") { box.style.display = "none"; }
  };
  if (window.__fmaHelpKey) document.removeEventListener("keydown", window.__fmaHelpKey);
  window.__fmaHelpKey = onKey;
  document.addEventListener("keydown", onKey);
}
"""
_help = st.components.v2.component("fma_keyboard_help", js=_HELP_JS)


def keyboard_help(rows: Sequence[tuple[str, str]], *, key: str) -> None:
    """A list of shortcuts that ``?`` shows and hides (Escape hides), in the browser only."""
    items = "".join(f"<tr><td style='padding:2px 12px 2px 0'><kbd>{html.escape(k)}</kbd></td>"
                    f"<td>{html.escape(what)}</td></tr>" for k, what in rows)
    _help(key=key, data={"html": f"<b>Keyboard</b><table>{items}</table>"
                                 "<p style='opacity:.7;margin:.5rem 0 0'>? or Esc closes</p>"},
          height=0)


_GRID_JS = """
export default function ({ parentElement, data, setTriggerValue }) {
  const classes = data.choices, colours = data.colours, keys = data.keys;
  const values = Object.fromEntries(data.items.map((it) => [it.id, it.value]));
  let cursor = 0;
  const root = document.createElement("div");
  root.className = "fma-grid";
  root.style.cssText = `display:grid;grid-template-columns:repeat(${data.per_row}, ${data.px + 12}px);gap:8px`;
  const cells = data.items.map((it, i) => {
    const cell = document.createElement("div");
    cell.className = "fma-cell";
    cell.dataset.cropId = it.id;
    cell.style.cssText = "border:4px solid transparent;border-radius:6px;padding:2px;cursor:pointer;" +
      "outline-offset:2px;text-align:center;font:12px sans-serif";
    const img = document.createElement("img");
    img.src = it.src; img.width = data.px; img.height = data.px; img.alt = `crop ${it.id}`;
    img.style.imageRendering = data.pixelated ? "pixelated" : "auto";
    img.dataset.gridCropId = it.id;
    const tag = document.createElement("div");
    cell.append(img, tag);
    cell.onclick = () => { cursor = i; set(it.id, classes[(classes.indexOf(values[it.id]) + 1) % classes.length]); };
    root.appendChild(cell);
    return { cell, tag, id: it.id };
  });
  const paint = () => cells.forEach((c, i) => {
    const v = values[c.id];
    c.cell.style.borderColor = colours[v];
    c.cell.style.background = colours[v] + "22";
    c.tag.textContent = v;
    c.tag.style.color = colours[v];
    c.cell.style.outline = i === cursor ? "3px solid #ffb300" : "none";
    c.cell.dataset.value = v;
    c.cell.dataset.cursor = i === cursor ? "1" : "0";
  });
  const set = (id, v) => { values[id] = v; paint(); };
  parentElement.appendChild(root);
  paint();
  const onKey = (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const n = cells.length, row = data.per_row;
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -row, ArrowDown: row };
    if (e.key in moves) {
      cursor = Math.min(n - 1, Math.max(0, cursor + moves[e.key]));
      paint(); e.preventDefault(); return;
    }
    const k = e.key.toLowerCase();
    if (k in keys) { set(cells[cursor].id, keys[k]); cursor = Math.min(n - 1, cursor + 1); paint(); e.preventDefault(); return; }
    if (k === data.submit_key) { e.preventDefault(); setTriggerValue("submit", JSON.stringify(values)); }
  };
  if (window.__fmaGridKey) document.removeEventListener("keydown", window.__fmaGridKey);
  window.__fmaGridKey = onKey;
  document.addEventListener("keydown", onKey);
}
"""
_grid = st.components.v2.component("fma_label_grid", js=_GRID_JS, isolate_styles=False)


def label_grid(items: list[dict], *, choices: Sequence[str], colours: dict[str, str],
               keys: dict[str, str], submit_key: str, per_row: int, px: int, pixelated: bool,
               key: str) -> dict[int, str] | None:
    """A page of crops decided in the browser: arrows move the cursor, a label key sets the crop
    under it (and moves on), a click sets the next class, ``submit_key`` sends the whole page.

    ``items``: ``[{"id", "src", "value"}, ...]``. Returns ``{crop_id: value}`` on the run the
    page was submitted, else None.
    """
    result = _grid(key=key, data={"items": items, "choices": list(choices), "colours": colours,
                                  "keys": keys, "submit_key": submit_key, "per_row": per_row,
                                  "px": px, "pixelated": pixelated},
                   on_submit_change=lambda: None)
    raw = getattr(result, "submit", None)
    return {int(k): v for k, v in json.loads(raw).items()} if raw else None
