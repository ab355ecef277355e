"""Altair charts of the pages: readable with one point or fifty, small counts still visible."""
from __future__ import annotations

import html
import math
from typing import Sequence

import altair as alt
import pandas as pd


def training_curves(epochs: list[dict]) -> alt.Chart:
    """Loss (left) and validation balanced accuracy (right) per epoch, with markers."""
    df = pd.DataFrame(epochs)
    base = alt.Chart(df).encode(x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d"),
                                        title="epoch"))
    losses = [c for c in ("loss", "val_loss") if c in df]
    loss = base.transform_fold(losses, as_=["series", "value"]).mark_line(point=True).encode(
        y=alt.Y("value:Q", title="loss"), color=alt.Color("series:N", title=None))
    charts = [loss.properties(height=220, title="loss")]
    if "val_balanced_accuracy" in df:
        acc = base.mark_line(point=True, color="#2e7d32").encode(
            y=alt.Y("val_balanced_accuracy:Q", title="balanced accuracy",
                    scale=alt.Scale(domain=[0, 1])),
            tooltip=["epoch", "val_balanced_accuracy"])
        charts.append(acc.properties(height=220, title="validation balanced accuracy"))
    return alt.hconcat(*charts)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> alt.Chart:
    rows = [{"true": t, "predicted": p, "n": int(matrix[i][j])}
            for i, t in enumerate(classes) for j, p in enumerate(classes)]
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(x=alt.X("predicted:N", sort=list(classes)),
                                y=alt.Y("true:N", sort=list(classes)))
    heat = base.mark_rect().encode(color=alt.Color("n:Q", scale=alt.Scale(scheme="blues"),
                                                   legend=None))
    text = base.mark_text(fontSize=14).encode(text="n:Q")
    return (heat + text).properties(width=220, height=220, title="confusion (validation)")


def over_time(df: pd.DataFrame, x: str, columns: Sequence[str], *, title: str,
              x_title: str | None = None, integer_x: bool = False) -> alt.Chart:
    """Lines with a marker on every point, so one version is a visible dot, not nothing."""
    long = df[[x, *columns]].melt(x, var_name="metric", value_name="value").dropna()
    axis = alt.Axis(format="d", tickMinStep=1) if integer_x else alt.Axis()
    kind = "Q" if integer_x else "T"
    return alt.Chart(long).mark_line(point=alt.OverlayMarkDef(size=60)).encode(
        x=alt.X(f"{x}:{kind}", axis=axis, title=x_title or x),
        y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title=None),
        color=alt.Color("metric:N", title=None),
        tooltip=[x, "metric", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=260, title=title)


def cumulative(df: pd.DataFrame, *, y_title: str) -> alt.Chart:
    """Running totals per time bin (index: the bin's start; one column per series) as lines
    with a marker on every point: a team's first hour is one visible dot per series, where a
    bare line of one point drew nothing."""
    long = df.rename_axis("time").reset_index().melt("time", var_name="series", value_name="n")
    return alt.Chart(long).mark_line(point=alt.OverlayMarkDef(size=70)).encode(
        x=alt.X("time:T", title=None),
        y=alt.Y("n:Q", title=y_title, scale=alt.Scale(domainMin=0)),
        # two columns: three names in a row overflowed a half-width chart and were cut off
        color=alt.Color("series:N", title=None,
                        legend=alt.Legend(orient="bottom", columns=2, labelLimit=220)),
        tooltip=[alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"), "series", "n:Q"],
    ).properties(height=220)


def counts(series: pd.Series, *, title: str, colours: dict[str, str] | None = None) -> alt.Chart:
    """Horizontal bars on a symmetric-log scale with the number printed at each bar: 1 next
    to 10,000 is still a bar you can see and a number you can read. (A plain log scale has no
    0 for a bar to start from: Vega drew no bar at all.)"""
    df = pd.DataFrame({"what": series.index.astype(str), "n": series.values.astype(int)})
    colour = (alt.Color("what:N", legend=None, scale=alt.Scale(domain=list(colours),
                                                               range=list(colours.values())))
              if colours else alt.value("#1565c0"))
    base = alt.Chart(df).encode(y=alt.Y("what:N", sort=None, title=None))
    top = max(int(df["n"].max()) if len(df) else 1, 1)
    x = alt.X("n:Q", scale=alt.Scale(type="symlog", domain=[0, top * 1.6]),
              axis=alt.Axis(values=[v for v in (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
                                    if v <= top * 1.6], format="~s"),
              title="count (log scale)")
    bars = base.mark_bar().encode(x=x, color=colour)
    text = base.mark_text(align="left", dx=4).encode(x="n:Q", text=alt.Text("n:Q", format=","))
    return (bars + text).properties(height=max(80, 28 * len(df)), title=title)


def bar_share(n: int, top: int) -> float:
    """A bar's length as a share of the longest, on a log scale (log1p): 1 next to 10,000 is
    still a bar you can see (about 8%), 0 is no bar."""
    return 0.0 if n <= 0 or top <= 0 else math.log1p(n) / math.log1p(top)


def count_bars(series: pd.Series, *, title: str, colours: dict[str, str] | None = None) -> str:
    """Horizontal bars as plain HTML (``st.html``), the count printed at each bar. Altair's
    layered bars came out 0 px tall inside the page's columns (no bar, labels on one line);
    these are drawn by the browser like any text and need no chart library."""
    rows = [(str(k), int(v)) for k, v in series.items()]
    top = max([v for _, v in rows] or [0])
    out = [f'<div class="count-bars"><p style="font-weight:600;margin:0 0 .4rem">'
           f'{html.escape(title)}</p>']
    for what, n in rows:
        colour = (colours or {}).get(what, "#1565c0")
        share = bar_share(n, top)
        bar = (f'<span class="count-bar" data-n="{n}" style="display:inline-block;height:1.1rem;'
               f'width:max(3px, calc({share:.4f} * (100% - 5rem)));background:{colour};'
               f'border-radius:3px;vertical-align:middle"></span>' if n > 0 else "")
        out.append(f'<div style="display:flex;align-items:center;gap:.5rem;margin:.2rem 0">'
                   f'<span style="flex:0 0 7.5rem;text-align:right;font-size:.85rem">'
                   f'{html.escape(what.replace("_", " "))}</span><span style="flex:1 1 0;'
                   f'min-width:0">{bar} <span style="font-size:.85rem">{n:,}</span></span></div>')
    out.append('<p style="font-size:.75rem;opacity:.6;margin:.2rem 0 0">bar length: log '
               'scale</p></div>')
    return "".join(out)


def histogram(values, *, bins: int = 20, title: str, x_title: str) -> alt.Chart:
    df = pd.DataFrame({"u": values})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("u:Q", bin=alt.Bin(maxbins=bins, extent=[0, 1]), title=x_title),
        y=alt.Y("count()", title="crops"),
    ).properties(height=220, title=title)
