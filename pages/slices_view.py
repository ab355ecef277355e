"""Dashboard section "Where the model is worst": per-slice errors with counts, a chart per
attribute, and a button that opens Browse on one slice (``browse_filter`` reads it there)."""
from __future__ import annotations

import html

import altair as alt
import pandas as pd
import streamlit as st

from annotator.core import slices
from annotator.data import slice_store

STATE_KEY = "browse_slice"  # (attribute, band) chosen on the Dashboard
PARAM = "slice"  # or ?slice=attribute:band in Browse's address
TOP = 8  # rows of the table
MIN_N = 5  # a band measured on fewer crops is listed but gets no Browse button ahead of others


def section(ws) -> None:
    """The whole Dashboard section; the Dashboard calls it with one line."""
    st.subheader("Where the model is worst")
    data = slice_store.overview(ws)
    rows = data["rows"]
    if not rows:
        st.caption("No per-slice errors yet: they are measured on the random share of each batch "
                   "(crops labeled after the active model scored them). Crop counts per slice "
                   "below; `annotator evaluate --slices` reports the validation split.")
    else:
        st.caption(f"{data['model']} on {data['n']} random-share labels. Worst = highest lower "
                   "end of the 95% error interval, so a slice of 4 crops does not top the list "
                   "by chance.")
        table = pd.DataFrame(rows[:TOP])
        table["95% interval"] = [f"{r['error_low']:.0%} – {r['error_high']:.0%}" for r in rows[:TOP]]
        st.dataframe(table[["attribute", "band", "n", "error", "95% interval",
                            "balanced_accuracy", "mean_uncertainty"]]
                     .style.format({"error": "{:.1%}", "balanced_accuracy": "{:.3f}",
                                    "mean_uncertainty": "{:.2f}"}),
                     hide_index=True, key="worst_slices")
        shown = [r for r in rows if r["n"] >= MIN_N and r["band"] != slices.UNKNOWN][:4]
        cols = st.columns(max(1, len(shown)))
        for col, r in zip(cols, shown):
            if col.button(f"Browse {r['attribute']}: {r['band']} ({r['n']})",
                          key=f"slice_{r['attribute']}_{r['band']}"):
                st.session_state[STATE_KEY] = (r["attribute"], r["band"])
                st.switch_page("browse.py")
    errors = {(r["attribute"], r["band"]): r["error"] for r in rows}
    attrs = [a for a in slices.ATTRIBUTES if data["counts"].get(a)]
    for start in range(0, len(attrs), 3):
        cols = st.columns(3)
        for col, attr in zip(cols, attrs[start:start + 3]):
            col.altair_chart(_chart(attr, data["counts"][attr], errors), width="stretch")


NOT_MEASURED = "#7fa7d9"  # a band with no measured error yet: a bar all the same


def _chart(attr: str, counts: dict, errors: dict) -> alt.Chart:
    """Crops per band (bars, labeled with the count), coloured by the measured error; bands
    with no error measured yet are plain blue (Vega-Lite drops a mark whose colour field is
    null, so their error is -1 here, never shown as a number)."""
    df = pd.DataFrame([{"band": b, "crops": n,
                        "error": -1.0 if errors.get((attr, b)) is None else errors[(attr, b)],
                        "measured": "not yet" if errors.get((attr, b)) is None else
                        f"{errors[(attr, b)]:.1%}"}
                       for b, n in counts.items()])
    measured = bool((df["error"] >= 0).any())  # no red legend beside bars that are all blue
    base = alt.Chart(df).encode(
        x=alt.X("band:N", title=None, sort=list(counts), axis=alt.Axis(labelAngle=0, labelLimit=90)),
        y=alt.Y("crops:Q", title="crops"))
    bars = base.mark_bar().encode(
        color=alt.condition("datum.error >= 0",
                            # from a light red, not white: a 0%-error band is a bar too
                            alt.Color("error:Q", scale=alt.Scale(domain=[0, 0.5],
                                                                 range=["#fcbba1", "#99000d"]),
                                      legend=alt.Legend(title="error", format=".0%")
                                      if measured else None),
                            alt.value(NOT_MEASURED)),
        tooltip=["band", "crops", alt.Tooltip("measured:N", title="error")])
    text = base.mark_text(dy=-6, fontSize=11).encode(text="crops:Q")
    return (bars + text).properties(height=220, title=attr)


def slice_requested() -> bool:
    """Whether Browse was opened on a slice (from the Dashboard, or ``?slice=a:b``)."""
    param = st.query_params.get(PARAM)
    return bool(st.session_state.get(STATE_KEY) or (param and ":" in param))


def browse_filter(ws) -> dict:
    """Browse's extra filter when a slice was opened from the Dashboard (or ``?slice=a:b``):
    ``{"crop_ids": [...]}`` of the newest crops in it, with a line saying so and a way out."""
    chosen = st.session_state.get(STATE_KEY)
    param = st.query_params.get(PARAM)
    if chosen is None and param and ":" in param:
        chosen = tuple(param.split(":", 1))
    if not chosen:
        return {}
    attr, band = chosen
    if attr not in slices.ATTRIBUTES:
        st.warning(f"unknown slice attribute {html.escape(str(attr))!r}")
        return {}
    ids = slice_store.crop_ids_in(ws, attr, str(band), limit=500)
    c1, c2 = st.columns([4, 1])
    c1.info(f"Slice {attr}: {band} ({len(ids)} crops, newest first)")
    if c2.button("Show all crops", key="slice_clear"):
        st.session_state.pop(STATE_KEY, None)
        st.query_params.pop(PARAM, None)
        st.rerun()
    return {"crop_ids": ids}
