"""The page's outputs for one result: the verdict, one row per person, the timeline, the plots, the report.

Every number shown comes from the :class:`~stylefusion.results.DetectionResult`; the analysis
behind the plots (style flow, the 2-D projection) lives in :mod:`stylefusion.explain`. People are
named as in the JSON report and the detector's message (``person 0``, ``person 1``, ... by their
``id``), and times are written as the message writes them (``0:45–1:00``).

- :func:`verdict_markdown`: the video's answer on top, naming who and when, and a table of people;
- :func:`person_rows`: per person, a line with their answer and the crops of their judged stretches;
- :func:`timeline_figure`: ``p_fake`` per stretch and person (trained head) or who is seen when
  (untrained head, or nobody judged), with the stretches that were not analysed;
- :func:`temporal_figure`, :func:`style_pattern_figure`, :func:`confidence_figure`: the per-frame
  evidence of one judged segment, the one the page's *Person and stretch* selector names
  (:func:`segment_choices`, :func:`find_segment`); by default the main segment (the report's
  ``frames``: the most present person's first judged stretch);
- :func:`plot_notes`: the line above each plot, and :func:`explanation_markdown` the reading guide,
  both saying only what holds for this result (nothing about attention for an untrained head);
- :func:`summary`: the report without its per-frame records (the API's ``summary`` output). The
  report file itself is written by :class:`~stylefusion.app.privacy.Retention`, which deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stylefusion.decision import QUALITY_REASONS, record_facts
from stylefusion.explain import pca2
from stylefusion.results import DetectionResult, Label, PersonResult, SegmentResult, most_suspicious
from stylefusion.results import clock  # the times the detector's message writes

#: How to read the answer: the reading guide above the results (the API's ``explanation`` output
#: starts with it; :func:`explanation_markdown` adds what the plots of this video show).
EXPLANATION = """
**How to read the answer**

- **People and stretches**: the video is cut into stretches of equal length, at most the
  checkpoint's window (15 s unless it was trained on longer or shorter videos); in each one every
  face is followed from frame to frame, and a track never jumps to another face. A person seen in
  enough distinct frames of a stretch is judged on crops of their own face only. A person's answer
  is that of their most suspicious stretch, and the video's that of its most suspicious person:
  **a fake anywhere makes the video fake**.
- **The answer** for each person and stretch is *likely fake* or *likely real* by the decision
  threshold, *uncertain* inside the uncertain band (where the checkpoint's calibrated prediction
  set holds both answers) or when the video is unlike the videos the detector was trained on, and
  *cannot judge* when the face is too small, blurry, dark or bright. The numbers under the verdict
  say how each was obtained, including how often the threshold was wrong on validation videos.
  An **untrained** checkpoint gives no answer at all: its score would be noise.
- **The plots** show one person in one stretch: choose which with *Person and stretch*. Each has a
  line above it saying what it shows. They explain what the model looked at; they are not proof on
  their own.
"""

_VERDICT_TITLES = {Label.FAKE: "Likely FAKE (manipulated face)", Label.REAL: "Likely REAL",
                   Label.UNCERTAIN: "UNCERTAIN"}
#: A label in words, for a person or a stretch.
_LABEL_WORDS = {Label.FAKE: "FAKE", Label.REAL: "REAL", Label.UNCERTAIN: "UNCERTAIN",
                Label.UNTRAINED: "no verdict (untrained checkpoint)", Label.NOT_JUDGED: "not judged",
                Label.NO_FACE: "no face", Label.UNSUPPORTED: "cannot judge (face too small, blurry, dark or bright)"}
#: People listed at most in the verdict's table (all of them are in the JSON report).
MAX_TABLE_PEOPLE = 10
#: Crops shown at most per person (spread evenly over their judged stretches).
MAX_CROPS_PER_PERSON = 64
#: One colour per person id (cycled), the same in the rows' headings and the timeline.
PERSON_COLOURS = ("#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d")


def person_colour(pid: int) -> str:
    return PERSON_COLOURS[int(pid) % len(PERSON_COLOURS)]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def span(start_s: float, end_s: float) -> str:
    """``0:45–1:00``, as the detector's message writes a stretch."""
    return f"{clock(start_s)}–{clock(end_s)}"


def label_words(label: Label | str) -> str:
    return _LABEL_WORDS.get(Label(label), Label(label).value)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def main_segment(res: DetectionResult) -> SegmentResult | None:
    """The segment whose records are the report's ``frames`` (the most present person's first judged one)."""
    if not res.frames:
        return None
    return next((s for s in res.segments if s.judged and s.frames == res.frames), None)


def _who(seg: SegmentResult | None) -> str:
    return "" if seg is None else f"person {seg.person}, {span(seg.start_s, seg.end_s)}"


def where(res: DetectionResult) -> str:
    """Who and when the video's answer comes from: ``person 2, 0:45–1:00`` ("" with no judged person).

    The most suspicious judged person and their most suspicious stretch, by the same rule (and the
    same words) as the detector's message.
    """
    top = most_suspicious(res.people)
    seg = None if top is None else most_suspicious(top.segments)
    return "" if seg is None else f"person {top.id}, {span(seg.start_s, seg.end_s)}"


def _not_judged_reason(person: PersonResult) -> str:
    reasons = list(dict.fromkeys(s.message for s in person.segments if not s.judged and s.message))
    return "; ".join(reasons[:2]) or "not seen long enough to judge"


def person_line(person: PersonResult) -> str:
    """``person 1 · 0:00–0:15 · REAL (p_fake 0.120)``: who, when they appear, and their answer."""
    text = f"person {person.id} · {span(person.first_s, person.last_s)} · {label_words(person.label)}"
    if person.p_fake is not None:
        text += f" (p_fake {person.p_fake:.3f})"
    if not person.judged:
        text += f": {_not_judged_reason(person)}"
    return text


def _segment_line(seg: SegmentResult) -> str:
    shot = "" if seg.shot is None else f" (shot {seg.shot + 1})"
    text = f"{span(seg.start_s, seg.end_s)}{shot}: {label_words(seg.label)}"
    if seg.p_fake is not None:
        text += f" (p_fake {seg.p_fake:.3f})"
    if not seg.judged and seg.message:
        return text + f": {seg.message}"
    return text + f", {_plural(seg.distinct_frames, 'distinct frame')}"


# ---------------------------------------------------------------------------------------------
# the verdict, on top
# ---------------------------------------------------------------------------------------------
def band_words(res: DetectionResult) -> str:
    """The answer as a band in words: where p_fake lies against the uncertain band and the
    threshold, and why (for an out-of-domain segment, that it is unlike the training videos)."""
    d = res.decision
    label = Label(res.label)
    p = res.p_fake
    if d is None or p is None:
        return ""
    if label is Label.UNCERTAIN and d.out_of_domain:
        return (f"**Uncertain: this video is unlike the videos this detector was trained on** (out-of-domain "
                f"score {d.ood_score:.2f} above its limit {d.ood_threshold:.2f}), so its p_fake **{p:.3f}** is "
                "shown but not turned into a verdict.")
    band = d.band
    if label is Label.UNCERTAIN:
        where_ = (f"inside the uncertain band **{band[0]:.3f}–{band[1]:.3f}**" if band else "too close to the threshold")
        return f"**Uncertain**: p_fake **{p:.3f}** is {where_}, where the evidence supports neither answer."
    side = "above" if label is Label.FAKE else "below"
    words = "likely fake" if label is Label.FAKE else "likely real"
    parts = [f"**{words[0].upper() + words[1:]}**: p_fake **{p:.3f}** is {side} the decision threshold **{d.threshold:.3f}**"]
    if band:
        parts.append(f"and outside the uncertain band {band[0]:.3f}–{band[1]:.3f}")
    return " ".join(parts) + "."


def _facts_markdown(d: Any) -> str:
    """How the numbers behind the answer were obtained, one bullet each."""
    facts = record_facts(d)
    if not d.calibrated:
        facts.append("this checkpoint is **uncalibrated** (trained before calibration existed): its probability is "
                     "the raw sigmoid, its band a fixed margin, and it has no out-of-domain check")
    return "<small>\n\n" + "\n".join(f"- {f}" for f in facts) + "\n\n</small>"


def where_unsupported(res: DetectionResult) -> str:
    seg = next((s for s in res.segments if Label(s.label) is Label.UNSUPPORTED), None)
    return "" if seg is None else f"person {seg.person}, {span(seg.start_s, seg.end_s)}"

def _coverage_line(res: DetectionResult) -> str:
    n_windows = len(res.timeline)
    analysed = [t for t in res.timeline if t.analysed]
    judged = sum(p.judged for p in res.people)
    people = f"{_plural(len(res.people), 'person', 'people')} found, {judged} judged"
    if n_windows <= 1:
        where_ = (f"in the whole video ({span(res.timeline[0].start_s, res.timeline[0].end_s)})"
                  if res.timeline else "")
        return f"{people} {where_}.".replace(" .", ".")
    length = span(res.timeline[0].start_s, res.timeline[-1].end_s)
    return (f"{people}, in {len(analysed)} of the {n_windows} stretches of this {length} video "
            f"(the others were not analysed)." if len(analysed) < n_windows
            else f"{people}, in all {n_windows} stretches of this {length} video.")


def _people_table(res: DetectionResult, trained: bool) -> str:
    if not res.people:
        return ""
    rows = ["| person | seen | answer |" + (" p_fake |" if trained else ""),
            "|---|---|---|" + ("---|" if trained else "")]
    for p in res.people[:MAX_TABLE_PEOPLE]:
        row = f"| {p.id} | {span(p.first_s, p.last_s)} | {label_words(p.label)} |"
        if trained:
            row += f" {_p(p.p_fake)} |"
        rows.append(row)
    text = "\n".join(rows)
    if len(res.people) > MAX_TABLE_PEOPLE:
        text += f"\n\n…and {len(res.people) - MAX_TABLE_PEOPLE} more in the JSON report."
    return text


def verdict_markdown(res: DetectionResult, n_frames: int) -> str:
    """The verdict area: the video's label naming who and when, or the reason there is none.

    ``n_frames`` is the number of frames sampled per stretch (the checkpoint's ``num_frames``).
    """
    label = Label(res.label)
    n_sampled = n_frames * max(1, sum(t.analysed for t in res.timeline))
    face_line = f"A face was found in {res.face_found_ratio:.0%} of the {n_sampled} sampled frames."
    coverage = _coverage_line(res)
    trained = label is not Label.UNTRAINED and any(p.p_fake is not None for p in res.people)
    table = _people_table(res, trained)
    if label is Label.UNTRAINED:
        text = ("## No verdict: this checkpoint is untrained\n"
                "Its classifier head has random weights, so any probability it produced would look "
                "like an answer but mean nothing. The people, their face crops and the plots below show "
                "what the pipeline extracted from your video.\n\n" + coverage + " " + face_line)
    elif label is Label.NO_FACE:
        if res.people:
            text = ("## No verdict: nobody is visible long enough to judge\n"
                    f"{coverage} {face_line} StyleFusion judges a person on frames of their own face, "
                    "so it gives no verdict on this video. Try a clip where a face stays in view.")
        else:
            text = ("## No face found\n"
                    f"{face_line} StyleFusion judges faces, so it gives no verdict on this video. "
                    "Try a clip where a face is visible and reasonably large.")
    elif label is Label.UNSUPPORTED:
        d = res.decision
        reasons = ", ".join(QUALITY_REASONS[r] for r in (d.quality_reasons if d else []))
        text = ("## No verdict: the face cannot be judged" + (f" — {where_unsupported(res)}" if res.people else "")
                + "\n" + (f"**{reasons[:1].upper() + reasons[1:]}** for this checkpoint to judge it. " if reasons else "")
                + "StyleFusion gives no verdict on faces it cannot see well: that is an answer, not an error. "
                f"Try a clip where the face is larger, sharper and evenly lit.\n\n{coverage} {face_line}")
        if d is not None:
            text += "\n\n" + _facts_markdown(d)
    else:
        who = where(res)
        d = res.decision
        text = (f"## Verdict: {_VERDICT_TITLES[label]}" + (f" — {who}" if who else "") + "\n"
                + band_words(res) + "\n\n"
                "The video's answer is its most suspicious person's: a fake anywhere makes the video fake."
                f"\n\n{coverage} {face_line}")
        if d is not None:
            text += "\n\n" + _facts_markdown(d)
    if table:
        text += "\n\n" + table
    if res.message and label is Label.NO_FACE and res.people:  # other labels' notes repeat the text
        text += f"\n\n_Detector note: {res.message}_"
    total = res.timings.get("total")
    if total is not None:
        text += f"\n\nAnalysed in {total:.1f} s."
    return text


# ---------------------------------------------------------------------------------------------
# one row per person
# ---------------------------------------------------------------------------------------------
@dataclass
class PersonRow:
    """What one person's row shows: a heading with their answer, details, and their crops."""

    person: int
    label: Label
    p_fake: float | None
    title: str  # markdown
    items: list[tuple[np.ndarray, str]] = field(default_factory=list)  # (crop, caption)


def _crop_items(person: PersonResult, limit: int = MAX_CROPS_PER_PERSON) -> list[tuple[np.ndarray, str]]:
    segs = [s for s in person.segments if s.judged and s.crops is not None]
    if not segs:
        return []
    per_seg = max(1, limit // len(segs))
    items = []
    for seg in segs:
        n = min(len(seg.crops), len(seg.frames) or len(seg.crops))
        keep = range(n) if n <= per_seg else np.unique(np.linspace(0, n - 1, per_seg).round().astype(int))
        for i in keep:
            frame = seg.frames[i] if i < len(seg.frames) else None
            # Fits under a thumbnail of the 8-column grid (about 16 characters): the time in the video
            # only when the person has several stretches, the source frame, the face probability.
            caption = "" if frame is None else f"#{frame.source_index} p={frame.detection_prob:.2f}"
            if frame is not None and frame.fallback:
                caption += " no face"
            if len(segs) > 1:
                caption = f"{clock(frame.timestamp if frame else seg.start_s)} {caption}"
            items.append((np.ascontiguousarray(seg.crops[i]), caption))
    return items


def person_rows(res: DetectionResult) -> list[PersonRow]:
    """One row per person: judged people first, then the others, each group by id."""
    rows = []
    for person in sorted(res.people, key=lambda p: (not p.judged, p.id)):
        colour = person_colour(person.id)
        title = f"#### <span style='color:{colour}'>■</span> {person_line(person)}"
        segs = person.segments
        judged = [s for s in segs if s.judged]
        items = _crop_items(person)
        if len(segs) > 1:
            title += "\n" + "\n".join(f"- {_segment_line(s)}" for s in segs[:8])
            if len(segs) > 8:
                title += f"\n- …{len(segs) - 8} more stretches in the JSON report"
        elif judged:
            s = judged[0]
            title += (f"\n\nJudged on the {len(s.frames)} crops below, from "
                      f"{_plural(s.distinct_frames, 'distinct frame')} of the stretch {span(s.start_s, s.end_s)}.")
        if items:
            shown = "" if len(judged) == 1 else f"{len(items)} crops from their judged stretches; "
            title += f"\n\n<small>{shown}under each crop: #source frame, p = the face detector's confidence (click a crop to enlarge it).</small>"
        rows.append(PersonRow(person.id, Label(person.label), person.p_fake, title, items))
    return rows


# ---------------------------------------------------------------------------------------------
# the timeline
# ---------------------------------------------------------------------------------------------
def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    runs, start = [], None
    for i, f in enumerate([*flags, False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def timeline_figure(res: DetectionResult, selected: SegmentResult | None = None) -> go.Figure:
    """Who is judged how in each stretch of the video.

    With p_fake (a trained head): one line per person and analysed stretch at its p_fake, the
    threshold and the uncertain band. Without (untrained head, or nobody judged): presence, one
    bar per person and stretch from when they are first to last seen, solid when judged and pale
    when only listed, labelled with their distinct frames. Stretches not analysed are grey, and
    analysed stretches where nobody was seen are marked "no face". The stretch the other plots
    show (``selected``, default: the main segment's) is outlined.
    """
    fig = go.Figure()
    timeline = res.timeline
    duration = timeline[-1].end_s if timeline else max([s.last_s for s in res.segments] or [1.0])
    segments = res.segments
    scores = any(s.judged and s.p_fake is not None for s in segments)
    names = {p.id: f"person {p.id}" for p in res.people}

    # Stretches not analysed, and analysed ones with nobody in them.
    shading = (([not t.analysed for t in timeline], "rgba(134,142,150,0.28)", "rgba(134,142,150,0.6)", "not analysed"),
               ([t.analysed and not t.people for t in timeline], "rgba(250,176,5,0.18)", "rgba(250,176,5,0.5)",
                "no face"))
    for flags, fill, legend_colour, name in shading:
        runs = _runs(flags)
        for a, b in runs:
            fig.add_vrect(x0=timeline[a].start_s, x1=timeline[b].end_s, fillcolor=fill, line_width=0, layer="below")
        if runs:  # a legend entry for the shading
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                     marker=dict(symbol="square", size=14, color=legend_colour)))
    if 1 < len(timeline) <= 64:
        for t in timeline[1:]:
            fig.add_vline(x=t.start_s, line_width=1, line_dash="dot", line_color="rgba(0,0,0,0.2)")
    # Shot cuts: a person's spans end at them, and each shot is judged on its own.
    cuts = [shot["start_s"] for shot in res.shots if shot.get("cut")]
    for x in cuts[:200]:
        fig.add_vline(x=x, line_width=1.5, line_dash="dash", line_color="rgba(112,72,232,0.55)")
    if cuts:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=_plural(len(cuts), "shot cut"),
                                 hoverinfo="skip", line=dict(color="rgba(112,72,232,0.55)", dash="dash")))

    if scores:
        thr = res.threshold
        band = res.decision.band if res.decision is not None else None
        if band is not None:
            fig.add_hrect(y0=band[0], y1=band[1], fillcolor="rgba(250,176,5,0.12)", line_width=0, layer="below")
        fig.add_hline(y=thr, line_dash="dash", line_color="gray", annotation_text=f"threshold {thr:.2f}",
                      annotation_position="top left")
        order = sorted({s.person for s in segments if s.judged and s.p_fake is not None})
        for rank, pid in enumerate(order):
            segs = [s for s in segments if s.person == pid and s.judged and s.p_fake is not None]
            xs: list[float | None] = []
            ys: list[float | None] = []
            for s in segs:
                xs += [s.start_s, s.end_s, None]
                ys += [s.p_fake, s.p_fake, None]
            colour = person_colour(pid)
            # Lines drawn first are thicker, so people with the same score stay visible.
            width = max(3, 12 - 5 * rank)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=names.get(pid, f"person {pid}"),
                                     legendgroup=str(pid), line=dict(color=colour, width=width), hoverinfo="skip"))
            fig.add_trace(go.Scatter(
                x=[(s.start_s + s.end_s) / 2 for s in segs], y=[s.p_fake for s in segs], mode="markers",
                legendgroup=str(pid), showlegend=False, marker=dict(color=colour, size=width + 4,
                                                                   line=dict(color="white", width=1)),
                customdata=[[span(s.start_s, s.end_s), label_words(s.label), s.distinct_frames] for s in segs],
                hovertemplate=(f"person {pid}, " + "%{customdata[0]}<br>p_fake %{y:.3f}: %{customdata[1]}"
                               "<br>%{customdata[2]} distinct frames<extra></extra>")))
        listed = [s for s in segments if not s.judged]
        if listed:
            fig.add_trace(go.Scatter(
                x=[(s.first_s + s.last_s) / 2 for s in listed], y=[0.02] * len(listed), mode="markers",
                name="seen, not judged", marker=dict(symbol="x", size=9,
                                                    color=[person_colour(s.person) for s in listed]),
                customdata=[[s.person, span(s.start_s, s.end_s), s.message] for s in listed],
                hovertemplate="person %{customdata[0]}, %{customdata[1]}<br>%{customdata[2]}<extra></extra>"))
        fig.update_yaxes(title_text="p_fake", range=[0, 1.02])
        title = "Timeline: p_fake per person and stretch"
        height = 340
    else:
        people = sorted({s.person for s in segments})
        for pid in people:
            segs = [s for s in segments if s.person == pid]
            # A person seen in one frame still gets a visible bar.
            widths = [max(s.last_s - s.first_s, duration / 200) for s in segs]
            colour = person_colour(pid)
            fig.add_trace(go.Bar(
                y=[names.get(pid, f"person {pid}")] * len(segs), x=widths, base=[s.first_s for s in segs],
                orientation="h", name=names.get(pid, f"person {pid}"), showlegend=False,
                marker=dict(color=[_rgba(colour, 0.9 if s.judged else 0.3) for s in segs],
                            line=dict(color=colour, width=1)),
                text=[f"{s.distinct_frames} frames" + ("" if s.judged else " · not judged") for s in segs],
                textposition="inside", insidetextanchor="middle",
                customdata=[[span(s.start_s, s.end_s), span(s.first_s, s.last_s), s.distinct_frames,
                             "judged" if s.judged else f"not judged: {s.message}"] for s in segs],
                hovertemplate=(f"person {pid} in %{{customdata[0]}}<br>seen %{{customdata[1]}} in "
                               "%{customdata[2]} distinct frames<br>%{customdata[3]}<extra></extra>")))
        # category: the legend entries for the shading (no data) must not make the axis numeric
        fig.update_yaxes(type="category", autorange="reversed", categoryorder="array",
                         categoryarray=[names.get(p, f"person {p}") for p in people], title_text="")
        fig.update_layout(barmode="overlay")
        title = ("Timeline: who is seen when (untrained checkpoint: no p_fake)" if segments
                 and Label(res.label) is Label.UNTRAINED else "Timeline: who is seen when")
        if not segments:
            fig.add_annotation(text="no face in any analysed stretch", showarrow=False, x=duration / 2, y=0.5,
                               xref="x", yref="paper")
        height = 160 + 44 * max(1, len(people))
    shown = selected if selected is not None else main_segment(res)
    if shown is not None and len(timeline) > 1:
        fig.add_vrect(x0=shown.start_s, x1=shown.end_s, fillcolor="rgba(0,0,0,0)", layer="above",
                      line=dict(color=person_colour(shown.person), width=2, dash="dot"),
                      annotation_text=f"plots below: person {shown.person}", annotation_position="top left",
                      annotation_font_size=11)
    fig.update_xaxes(title_text="time in the video (s)", range=[0, duration])
    fig.update_layout(title=title, height=height, margin=dict(l=70, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.25 if scores else -0.4))
    return fig


# ---------------------------------------------------------------------------------------------
# choosing the person and stretch the plots show
# ---------------------------------------------------------------------------------------------
def segment_key(seg: SegmentResult) -> str:
    """The selector's value for a segment: ``person:window:start_ms`` (a person may have several
    spans, one per shot, in one window)."""
    return f"{seg.person}:{seg.window}:{round(seg.start_s * 1000)}"


def segment_choices(res: DetectionResult) -> list[tuple[str, str]]:
    """(label, value) per judged segment (the ones with per-frame records), in the people's order."""
    choices = []
    for person in sorted(res.people, key=lambda p: p.id):
        for seg in person.segments:
            if seg.judged and seg.frames:
                words = label_words(seg.label) if seg.p_fake is None else f"{label_words(seg.label)}, p_fake {seg.p_fake:.2f}"
                choices.append((f"person {seg.person}, {span(seg.start_s, seg.end_s)} ({words})", segment_key(seg)))
    return choices


def find_segment(res: DetectionResult, key: str | None) -> SegmentResult | None:
    """The segment a selector value names; the main segment (the report's ``frames``) when None or unknown."""
    if key:
        for seg in res.segments:
            if segment_key(seg) == key and seg.frames:
                return seg
    return main_segment(res)


def _untrained(res: DetectionResult, seg: SegmentResult | None) -> bool:
    label = Label(seg.label) if seg is not None else Label(res.label)
    return label is Label.UNTRAINED or Label(res.label) is Label.UNTRAINED


def plot_notes(res: DetectionResult, seg: SegmentResult | None = None) -> dict[str, str]:
    """One short paragraph above each plot, saying what it shows for this result (keys as the
    figures: ``timeline``, ``temporal``, ``style``, ``confidence``)."""
    seg = seg if seg is not None else main_segment(res)
    scores = any(s.judged and s.p_fake is not None for s in res.segments)
    if scores:
        timeline = ("**Timeline**: each person's *p_fake* in each analysed stretch; the dashed line is the decision "
                    "threshold and the shaded band the uncertain band.")
    else:
        timeline = "**Timeline**: who is seen when; a solid bar is a person judged in that stretch, a pale one only seen."
    timeline += (" Grey stretches were not analysed (a long video is sampled in at most the number of stretches "
                 "set under *Options*, spread evenly over it).")
    if seg is not None and seg.frames and not _untrained(res, seg) and seg.frames[0].contribution is not None:
        temporal = ("**Which frames moved the score**: each sampled frame's *contribution*, how much the score drops "
                    "(red: the frame pushed toward fake) or rises (blue: toward real) when that frame's style is "
                    "replaced by its neighbours'. Below it, the *style flow* (how much the face's style code changes "
                    "from one sampled frame to the next) and the pale *attention* bars: what the head weighted, "
                    "which is not evidence of manipulation.")
    else:
        temporal = ("**Temporal style pattern**: the *style flow*, how much the face's style code (its identity, "
                    "expression and lighting as a StyleGAN encoder sees them) changes from one sampled frame to the "
                    "next. Real faces usually change smoothly; face swaps and re-enactments can flicker.")
        if _untrained(res, seg):
            temporal += " With random weights the encoder's codes are not meaningful: this shows the pipeline runs."
    style = ("**Style pattern**: each point is one sampled frame's style code, projected to two dimensions (PCA), "
             "coloured by time. A compact, smooth path means a steady face; scattered points or jumps mean its "
             "appearance shifted between frames.")
    confidence = ("**Face detection confidence**: how sure the face detector was on each sampled frame (the dotted "
                  "line is the checkpoint's minimum). Frames marked *fallback* had no face and were replaced by a "
                  "centre crop, so their evidence is weak.")
    return {"timeline": timeline, "temporal": temporal, "style": style, "confidence": confidence}


# ---------------------------------------------------------------------------------------------
# the main segment's evidence
# ---------------------------------------------------------------------------------------------
def _view(res: DetectionResult, seg: SegmentResult | None) -> tuple[SegmentResult | None, list[Any], Any]:
    """(segment, its per-frame records, its style latents): ``seg``, else the main segment (the report's ``frames``)."""
    if seg is not None:
        return seg, list(seg.frames), seg.style_latents
    return main_segment(res), list(res.frames), res.style_latents


def _frame_axis(frames: list[Any]) -> tuple[list[int], list[list[Any]]]:
    """x = position of the sample (monotonic even when short videos are padded circularly)."""
    xs = list(range(1, len(frames) + 1))
    custom = [[f.source_index, f.timestamp] for f in frames]
    return xs, custom


def _titled(title: str, seg: SegmentResult | None) -> str:
    who = _who(seg)
    return f"{title} · {who}" if who else title


def temporal_figure(res: DetectionResult, seg: SegmentResult | None = None) -> go.Figure:
    """Per sampled frame of ``seg`` (default: the main segment): its contribution to the score (the
    headline, trained heads), then the style flow with the attention weights, labelled as attention
    (what the head weighted, which is not evidence of manipulation). An untrained head's attention
    is flat (1/T on every frame), so it is not drawn."""
    seg, frames, _ = _view(res, seg)
    xs, custom = _frame_axis(frames)
    contributions = [f.contribution for f in frames]
    scored = bool(frames) and all(c is not None for c in contributions)
    attention = not _untrained(res, seg)
    hover = "frame %{customdata[0]} (%{customdata[1]:.2f}s)<br>"
    if scored:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.5, 0.5],
                            specs=[[{}], [{"secondary_y": True}]])
        fig.add_trace(go.Bar(x=xs, y=contributions, name="contribution to the score", customdata=custom,
                             marker_color=["#e03131" if c >= 0 else "#1c7ed6" for c in contributions],
                             hovertemplate=hover + "contribution %{y:+.3f} (logit)<extra></extra>"), row=1, col=1)
        fig.update_yaxes(title_text="contribution (logit)", row=1, col=1, zeroline=True)
        row, height = 2, 520
    else:
        fig = make_subplots(specs=[[{"secondary_y": attention}]])
        row, height = 1, 340
    if attention:
        fig.add_trace(go.Bar(x=xs, y=[f.attention for f in frames], name="attention weight (not evidence)",
                             customdata=custom, marker_color="rgba(255,140,0,0.35)",
                             hovertemplate=hover + "attention %{y:.3f}<extra></extra>"), row=row, col=1,
                      secondary_y=True)
    flow = go.Scatter(x=xs, y=[f.style_flow for f in frames], name="style flow", mode="lines+markers",
                      customdata=custom, line_color="#3b5bdb", hovertemplate=hover + "style flow %{y:.3f}<extra></extra>")
    if attention:
        fig.add_trace(flow, row=row, col=1, secondary_y=False)
    else:
        fig.add_trace(flow, row=row, col=1)
    title = "Which frames moved the score" if scored else "Temporal style pattern"
    fig.update_layout(title=_titled(title, seg), height=height, margin=dict(l=50, r=50, t=50, b=40),
                      legend=dict(orientation="h", y=-0.12 if scored else -0.2), bargap=0.2,
                      showlegend=attention or scored)
    fig.update_xaxes(title_text="sampled frame (in video order)", row=row, col=1)
    if attention:
        fig.update_yaxes(title_text="style flow", row=row, col=1, secondary_y=False)
        fig.update_yaxes(title_text="attention weight", row=row, col=1, secondary_y=True, rangemode="tozero")
    else:
        fig.update_yaxes(title_text="style flow", row=row, col=1)
    return fig


def style_pattern_figure(res: DetectionResult, seg: SegmentResult | None = None) -> go.Figure:
    """2-D PCA trajectory of the per-frame style latents of ``seg`` (default: the main segment), coloured by time."""
    seg, frames, latents = _view(res, seg)
    fig = go.Figure()
    fig.update_layout(title=_titled("Style pattern (PCA of style codes)", seg), height=340,
                      margin=dict(l=50, r=20, t=50, b=40))
    if latents is None or len(latents) < 2:
        fig.add_annotation(text="no style latents in this result", showarrow=False)
        return fig
    coords, ratio = pca2(latents)
    custom = [[f.source_index, f.timestamp] for f in frames]
    fig.add_trace(go.Scatter(
        x=coords[:, 0], y=coords[:, 1], mode="lines+markers", customdata=custom,
        line=dict(color="rgba(120,120,120,0.5)"),
        marker=dict(size=9, color=list(range(len(coords))), colorscale="Viridis", showscale=True,
                    colorbar=dict(title="sample")),
        hovertemplate="frame %{customdata[0]} (%{customdata[1]:.2f}s)<extra></extra>",
        name="style code"))
    fig.update_xaxes(title_text=f"PC1 ({ratio[0]:.0%} of variance)")
    fig.update_yaxes(title_text=f"PC2 ({ratio[1]:.0%} of variance)")
    return fig


def confidence_figure(res: DetectionResult, min_confidence: float | None = None,
                      seg: SegmentResult | None = None) -> go.Figure:
    """Face detection probability per frame of ``seg`` (default: the main segment); fallback frames
    marked so weak evidence is visible. The minimum confidence is a legend entry, not a label over the bars."""
    seg, frames, _ = _view(res, seg)
    xs, custom = _frame_axis(frames)
    colors = ["#e8590c" if f.fallback else "#2f9e44" for f in frames]
    fig = go.Figure(go.Bar(x=xs, y=[f.detection_prob for f in frames], marker_color=colors,
                           customdata=custom, name="detection probability",
                           hovertemplate="frame %{customdata[0]} (%{customdata[1]:.2f}s)<br>"
                                         "p(face) %{y:.3f}<extra></extra>"))
    fallback = [x for x, f in zip(xs, frames) if f.fallback]
    if fallback:
        fig.add_trace(go.Scatter(x=fallback, y=[0.02] * len(fallback), mode="markers",
                                 marker=dict(symbol="x", size=10, color="#e8590c"),
                                 name="fallback (no face, centre crop)", hoverinfo="skip"))
    if min_confidence is not None and xs:
        fig.add_trace(go.Scatter(x=[0.5, len(xs) + 0.5], y=[min_confidence] * 2, mode="lines",
                                 line=dict(dash="dot", color="gray"), hoverinfo="skip",
                                 name=f"min confidence {min_confidence:.2f}"))
    fig.update_layout(title=_titled("Face detection confidence per frame", seg), height=320,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="sampled frame (in video order)")
    fig.update_yaxes(title_text="p(face)", range=[0, 1.05])
    return fig


def explanation_markdown(res: DetectionResult, seg: SegmentResult | None = None) -> str:
    """The reading guide, then what each plot shows for this result (the API's ``explanation``).

    A trained head adds which frame pushed the score most toward fake; an untrained one adds no
    "most" anything: its attention is flat and its contributions do not exist, so any such frame
    would be a tie-break.
    """
    seg, frames, _ = _view(res, seg)
    if not frames:
        return EXPLANATION
    notes = plot_notes(res, seg)
    text = EXPLANATION + "\n**What the plots show**" + (f" (for {_who(seg)})" if seg is not None else "") + "\n\n"
    text += "\n".join(f"- {notes[k]}" for k in ("timeline", "temporal", "style", "confidence"))
    if not _untrained(res, seg) and frames[0].contribution is not None:
        top = max(frames, key=lambda f: f.contribution)
        text += (f"\n\nFrame {top.source_index} ({top.timestamp:.2f}s) pushed the score most toward fake "
                 f"(contribution {top.contribution:+.3f}).")
    return text + "\n"


def evidence_items(res: DetectionResult) -> list[tuple[np.ndarray, str]]:
    """The explained segments' heatmaps over their crops (style path, then content path per frame)."""
    from stylefusion.evidence import overlay

    items = []
    for seg in res.segments:
        for h in seg.heatmaps or []:
            frame = seg.frames[h.position]
            # Short enough for a thumbnail: source frame, path, and the frame's contribution.
            items.append((overlay(seg.crops[h.position], h.style),
                          f"#{frame.source_index} style {frame.contribution:+.2g}"))
            items.append((overlay(seg.crops[h.position], h.content), f"#{frame.source_index} motion"))
    return items


def evidence_markdown(res: DetectionResult) -> str:
    """What the overlays are, for whom, and what they are not."""
    from stylefusion.evidence import HEATMAP_NOTE

    explained = [s for s in res.segments if s.heatmaps]
    if not explained:
        return "No segment of this video was explained."
    seg = explained[0]
    frames = ", ".join(f"#{seg.frames[h.position].source_index}" for h in seg.heatmaps)
    return (f"**Evidence for person {seg.person}, {span(seg.start_s, seg.end_s)}** ({label_words(seg.label)}): "
            f"the {len(seg.heatmaps)} frames that pushed the score most toward fake ({frames}), each through "
            "the style path (*style*) and the motion path (*motion*, the 3D network's clip).\n\n"
            f"_{HEATMAP_NOTE}_")


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def provenance_markdown(res: DetectionResult) -> str:
    """What the file says about itself, beside the verdict: its Content Credentials (C2PA) and its
    processing history, in words. It never changes the model's label; where the two disagree, or
    the history makes the answer uncertain, it says so."""
    prov, history = res.provenance, res.history
    if prov is None and history is None:
        return ""
    lines = ["#### What the file itself says"]
    if prov is not None:
        validation = {"valid": "signed by a signer on the trust list", "untrusted": "signed; the signer is not on a "
                      "trust list", "self_signed": "self-signed", "expired": "signed with an expired certificate",
                      "invalid": "invalid"}
        status = {"absent": "none", "not_checked": "not checked", "unreadable": "unreadable",
                  "present": validation.get(prov.get("validation") or "", "present")}[prov["status"]]
        lines += ["", f"**Content Credentials:** {status}", ""]
        lines += [f"- {w}" for w in prov.get("words", [])]
        if prov["status"] == "present":
            signer = (prov.get("signer") or {}).get("common_name") or (prov.get("signer") or {}).get("organization")
            if signer or prov.get("claim_generator"):
                lines.append(f"- signed by {signer or 'an unnamed signer'}"
                             + (f", written by {prov['claim_generator']}" if prov.get("claim_generator") else ""))
    if history is not None:
        figs = []
        if history.get("codec"):
            figs.append(" ".join(str(x) for x in (history.get("codec"), history.get("profile")) if x))
        if history.get("width") and history.get("height"):
            figs.append(f"{history['width']}x{history['height']}" + (f" at {history['fps']:g} fps" if history.get("fps") else ""))
        if history.get("bpp") is not None:
            figs.append(f"{history['bpp']:.3f} bits per pixel")
        if history.get("mean_qp") is not None:
            figs.append(f"quantiser {history['mean_qp']:.0f} of 51")
        if history.get("face_crop_upscale"):
            figs.append(f"faces of about {history['face_crop_px']:.0f} px, scaled {history['face_crop_upscale']:.1f}x "
                        "to the model's input")
        lines += ["", f"**Processing history:** {', '.join(figs) or 'not measured'}", ""]
        signs = history.get("recapture_detail") or {}
        if signs:
            lines.append("- signs of a screen recording: " + "; ".join(signs.values()))
        for text in history.get("reason_text") or []:
            lines.append(f"- **{text}**: the answer is *uncertain* for this reason, whatever p_fake says")
        if history.get("robustness"):
            lines.append(f"- How this checkpoint holds up on files like this one: {history['robustness']}")
    return "\n".join(lines)


def summary(res: DetectionResult | dict[str, Any]) -> dict[str, Any]:
    """The report (``to_dict()``) without per-frame records: the video's answer, people, timeline.

    The API's ``summary`` output, so that a client reads people and timeline without fetching the
    report: its fields equal the report's, with every ``frames`` list left out, and no ``path``
    (the server's temporary copy; gradio_client would also take any object with a ``path`` for a
    file to download).
    """
    doc = res.to_dict() if isinstance(res, DetectionResult) else res
    people = [{**p, "segments": [{k: v for k, v in s.items() if k != "frames"} for s in p["segments"]]}
              for p in doc["people"]]
    return {"schema_version": doc["schema_version"], "label": doc["label"],
            "p_fake": doc["p_fake"], "threshold": doc["threshold"], "message": doc["message"],
            "people": people, "timeline": doc["timeline"]}


__all__ = ["evidence_items", "evidence_markdown", "EXPLANATION", "MAX_CROPS_PER_PERSON", "PersonRow", "verdict_markdown",
           "person_rows", "person_line", "where", "main_segment", "segment_key", "segment_choices", "find_segment",
           "provenance_markdown",
           "plot_notes", "timeline_figure", "temporal_figure", "style_pattern_figure", "confidence_figure",
           "explanation_markdown", "summary", "label_words", "span"]
