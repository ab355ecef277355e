"""Small browser-side pieces shared by the pages: label colours, a shortcut overlay, the grid.

The overlay and the grid are ``st.components.v2`` components (inline JavaScript in the page):
what they do on a key press happens in the browser, with no round trip to the server.
"""
from __future__ import annotations

import html
import json
from typing import Sequence

import streamlit as st

from annotator.core.config import NOT_A_FACE, SKIP

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
  // State lives per page key on window: a rerun that re-mounts the component keeps the decisions.
  const store = (window.__fmaGrid = window.__fmaGrid || {});
  const st = store[data.page] || (store[data.page] = {
    values: Object.fromEntries(data.items.map((it) => [it.id, it.value])), cursor: 0, saved: false});
  const values = st.values;
  const start = Object.fromEntries(data.items.map((it) => [it.id, it.value]));
  const dirty = () => !st.saved && data.items.some((it) => values[it.id] !== start[it.id]);
  parentElement.querySelectorAll(".fma-grid, .fma-grid-status").forEach((e) => e.remove());
  const root = document.createElement("div");
  root.className = "fma-grid";
  // Columns share the width (never wider than the crop size): no column is cut off.
  root.style.cssText = `display:grid;grid-template-columns:repeat(${data.per_row}, minmax(0, ${data.px + 12}px));gap:6px`;
  const status = document.createElement("p");
  status.className = "fma-grid-status";
  status.style.cssText = "margin:.3rem 0;font:14px sans-serif";
  const cells = data.items.map((it, i) => {
    const cell = document.createElement("div");
    cell.className = "fma-cell";
    cell.dataset.cropId = it.id;
    cell.style.cssText = "border:4px solid transparent;border-radius:6px;padding:2px;cursor:pointer;" +
      "outline-offset:2px;text-align:center;font:12px sans-serif;min-width:0";
    const img = document.createElement("img");
    img.src = it.src; img.alt = `crop ${it.id}`;
    img.style.cssText = "width:100%;height:auto;aspect-ratio:1;object-fit:contain;display:block";
    img.style.imageRendering = data.pixelated ? "pixelated" : "auto";
    img.dataset.gridCropId = it.id;
    const tag = document.createElement("div");
    cell.append(img, tag);
    cell.onclick = () => { st.cursor = i; paint(); };  // a click focuses; only a key decides
    root.appendChild(cell);
    return { cell, tag, id: it.id };
  });
  const paint = () => {
    let open = 0;
    cells.forEach((c, i) => {
      const v = values[c.id];
      const col = v ? colours[v] : "#9e9e9e";
      if (!v) open += 1;
      c.cell.style.borderColor = col;
      c.cell.style.borderStyle = v ? "solid" : "dashed";
      c.cell.style.background = v ? col + "22" : "transparent";
      c.tag.textContent = v ? v.replace(/_/g, " ") : "undecided";
      c.tag.style.color = col;
      c.cell.style.outline = i === st.cursor ? "3px solid #ffb300" : "none";
      c.cell.dataset.value = v || "";
      c.cell.dataset.cursor = i === st.cursor ? "1" : "0";
    });
    const n = cells.length;
    status.textContent = open
      ? `${n - open} of ${n} decided · ${open} undecided (${data.submit_key.toUpperCase()} saves the decided ones; the rest stay held for you)`
      : `all ${n} decided · ${data.submit_key.toUpperCase()} saves the page`;
    status.dataset.open = String(open);
  };
  parentElement.append(status, root);
  paint();
  const onKey = (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const n = cells.length, row = data.per_row;
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -row, ArrowDown: row };
    if (e.key in moves) {
      st.cursor = Math.min(n - 1, Math.max(0, st.cursor + moves[e.key]));
      paint(); e.preventDefault(); return;
    }
    const k = e.key.toLowerCase();
    if (k in keys) {
      // Past the last crop a key does nothing: it never overwrites the last one again.
      if (st.cursor < n) { values[cells[st.cursor].id] = keys[k]; st.cursor += 1; paint(); }
      e.preventDefault(); return;
    }
    if (k === data.submit_key) {
      e.preventDefault();
      const decided = Object.fromEntries(Object.entries(values).filter(([, v]) => v));
      if (!Object.keys(decided).length) { status.textContent = "nothing decided yet: nothing to save"; return; }
      st.saved = true;
      setTriggerValue("submit", JSON.stringify(decided));
    } else if (k === data.undo_key) {
      e.preventDefault();
      if (dirty() && !window.confirm("Take back your last saved page? The changes on this page are dropped.")) return;
      st.saved = true;
      setTriggerValue("undo", String(Date.now()));
    }
  };
  // Leaving with decisions not saved asks first: a sidebar link (the app never unloads) or a reload.
  const onNav = (e) => {
    const a = e.target.closest && e.target.closest("a");
    if (!a || !dirty() || !a.closest('[data-testid="stSidebar"]')) return;
    if (!window.confirm("You have unsaved decisions on this Grid page. Leave without saving?")) {
      e.preventDefault(); e.stopImmediatePropagation();
    } else { st.saved = true; }
  };
  const onUnload = (e) => { if (dirty()) { e.preventDefault(); e.returnValue = ""; } };
  for (const [type, old] of [["keydown", window.__fmaGridKey], ["click", window.__fmaGridNav]]) {
    if (old) document.removeEventListener(type, old, type === "click");
  }
  if (window.__fmaGridUnload) window.removeEventListener("beforeunload", window.__fmaGridUnload);
  window.__fmaGridKey = onKey; window.__fmaGridNav = onNav; window.__fmaGridUnload = onUnload;
  document.addEventListener("keydown", onKey);
  document.addEventListener("click", onNav, true);
  window.addEventListener("beforeunload", onUnload);
  return () => {  // unmounted (another page): the grid's keys and warnings go with it
    document.removeEventListener("keydown", onKey);
    document.removeEventListener("click", onNav, true);
    window.removeEventListener("beforeunload", onUnload);
  };
}
"""
_grid = st.components.v2.component("fma_label_grid", js=_GRID_JS, isolate_styles=False)


def label_grid(items: list[dict], *, choices: Sequence[str], colours: dict[str, str],
               keys: dict[str, str], submit_key: str, undo_key: str, per_row: int, px: int,
               pixelated: bool, key: str) -> tuple[str, dict[int, str] | None] | None:
    """A page of crops decided in the browser: arrows move the cursor, a click moves it there, a
    label key sets the crop under it (and moves on), ``submit_key`` sends the decided crops,
    ``undo_key`` asks to take back the last saved page. Leaving with unsaved decisions asks first.

    ``items``: ``[{"id", "src", "value"}, ...]``; ``value`` None is undecided. Returns
    ``("submit", {crop_id: value})`` or ``("undo", None)`` on the run it happened, else None.
    """
    result = _grid(key=key, data={"items": items, "choices": list(choices), "colours": colours,
                                  "keys": keys, "submit_key": submit_key, "undo_key": undo_key,
                                  "per_row": per_row, "px": px, "pixelated": pixelated, "page": key},
                   on_submit_change=lambda: None, on_undo_change=lambda: None)
    if getattr(result, "undo", None):
        return "undo", None
    raw = getattr(result, "submit", None)
    return ("submit", {int(k): v for k, v in json.loads(raw).items()}) if raw else None
