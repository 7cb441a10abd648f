"""The report's figures, from cached features and predictions: PNG (matplotlib) + HTML (plotly).

- confusion matrix (the report's Figures 4-7, 11, 15);
- temporal style patterns (Figures 8, 12, 16): style-flow magnitude — the L2 distance between
  consecutive frames' style vectors — over frame position, mean ± std for real and for fake videos;
- style patterns (Figures 9, 13, 17): 2-D PCA of the per-frame style latents, real vs fake;
- decision boundaries (Figures 10, 14, 18): the p_fake histogram per class with the threshold, and
  a 2-D PCA of the video-level features shaded by the model's decision (nearest-neighbour vote of
  the model's own predictions — the head itself works in a space a 2-D plot cannot show);
- training curves (Figures 2-3): loss and accuracy, train in blue and validation in red, plus val
  AUC and the learning rate, read from ``training_history.json``;
- beyond the report: the reliability diagram (share of fakes against mean p_fake per bin, raw
  sigmoid and calibrated) and the risk-coverage curve (error rate against the share of videos
  answered, most confident first, with the decision rule's own point).

matplotlib is used through ``matplotlib.figure.Figure`` (Agg), never ``pyplot``, so nothing global
is switched and nothing needs a display. The HTML files share one ``plotly.min.js`` written beside
them, so they open offline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from stylefusion._io import atomic_path, atomic_write
from stylefusion.explain import batched_style_flow, pca2

logger = logging.getLogger(__name__)

REAL_COLOUR, FAKE_COLOUR = "#1f77b4", "#d62728"
TRAIN_COLOUR, VAL_COLOUR = "blue", "red"  # the report's training-curve colours
MAX_STYLE_POINTS = 20000  # frames shown in the style-pattern scatter
PLOTLY_JS = "plotly.min.js"  # the bundle the HTML files load from their own folder


def _save(fig_mpl: Any, fig_plotly: Any, out: Path, stem: str) -> dict[str, str]:
    """Write ``<stem>.png`` and ``<stem>.html`` (and the shared ``plotly.min.js``), each atomically."""
    png, html = out / f"{stem}.png", out / f"{stem}.html"
    with atomic_path(png) as tmp:
        fig_mpl.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    bundle = out / PLOTLY_JS
    if not bundle.is_file():
        from plotly.offline import get_plotlyjs

        atomic_write(bundle, get_plotlyjs())
    atomic_write(html, fig_plotly.to_html(include_plotlyjs="directory", full_html=True))
    return {f"{stem}.png": str(png), f"{stem}.html": str(html)}


def confusion_matrix(cm: list[list[int]], out: Path, title: str = "Confusion matrix",
                     stem: str = "confusion_matrix") -> dict[str, str]:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    m = np.asarray(cm)
    names = ["Real", "Fake"]
    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=14)
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    pf = go.Figure(go.Heatmap(z=m, x=names, y=names, colorscale="Blues", text=m, texttemplate="%{text}"))
    pf.update_layout(title=title, xaxis_title="Predicted", yaxis_title="True",
                     yaxis_autorange="reversed", width=480, height=420)
    return _save(fig, pf, out, stem)


def temporal_style_patterns(style: np.ndarray, labels: np.ndarray, out: Path) -> dict[str, str]:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    flow = batched_style_flow(style)[:, 1:]  # [N, T-1]: the first frame has no previous one
    x = np.arange(1, flow.shape[1] + 1)
    fig = Figure(figsize=(7, 3.8))
    ax = fig.add_subplot()
    pf = go.Figure()
    for label, name, colour in ((0, "Real", REAL_COLOUR), (1, "Fake", FAKE_COLOUR)):
        sel = flow[labels == label]
        if not len(sel):
            continue
        mean, std = sel.mean(axis=0), sel.std(axis=0)
        ax.plot(x, mean, color=colour, label=f"{name} (n={len(sel)})")
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
        pf.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([mean + std, (mean - std)[::-1]]),
                                fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0},
                                hoverinfo="skip", showlegend=False))
        pf.add_trace(go.Scatter(x=x, y=mean, name=f"{name} (n={len(sel)})", line={"color": colour}))
    ax.set_xlabel("Frame position")
    ax.set_ylabel("Style flow ‖s_t − s_(t−1)‖₂")
    ax.set_title("Temporal style patterns (mean ± std)")
    ax.legend()
    pf.update_layout(title="Temporal style patterns (mean ± std)", xaxis_title="Frame position",
                     yaxis_title="Style flow (L2)")
    return _save(fig, pf, out, "temporal_style_patterns")


def style_patterns(style: np.ndarray, labels: np.ndarray, out: Path, seed: int = 0) -> dict[str, str]:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    n, t = style.shape[:2]
    frames = np.asarray(style, dtype=np.float64).reshape(n * t, -1)
    frame_labels = np.repeat(labels, t)
    if len(frames) > MAX_STYLE_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(frames), MAX_STYLE_POINTS, replace=False))
        frames, frame_labels = frames[keep], frame_labels[keep]
    proj, ratio = pca2(frames)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    pf = go.Figure()
    for label, name, colour in ((0, "Real", REAL_COLOUR), (1, "Fake", FAKE_COLOUR)):
        sel = frame_labels == label
        ax.scatter(proj[sel, 0], proj[sel, 1], s=4, alpha=0.4, color=colour, label=name)
        pf.add_trace(go.Scattergl(x=proj[sel, 0], y=proj[sel, 1], mode="markers", name=name,
                                  marker={"size": 3, "color": colour, "opacity": 0.5}))
    xl, yl = f"PC1 ({ratio[0]:.0%})", f"PC2 ({ratio[1]:.0%})"
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title("Style patterns (per-frame style latents, PCA)")
    ax.legend(markerscale=3)
    pf.update_layout(title="Style patterns (per-frame style latents, PCA)", xaxis_title=xl, yaxis_title=yl)
    return _save(fig, pf, out, "style_patterns")


def decision_boundaries(video_features: np.ndarray, labels: np.ndarray, p_fake: np.ndarray,
                        predicted: np.ndarray, threshold: float, out: Path) -> dict[str, str]:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure
    from plotly.subplots import make_subplots

    proj, ratio = pca2(video_features)
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    bins = np.linspace(0, 1, 26)
    pf = make_subplots(rows=1, cols=2, subplot_titles=("p_fake per class", "Decision regions (PCA of video features)"))
    for label, name, colour in ((0, "Real", REAL_COLOUR), (1, "Fake", FAKE_COLOUR)):
        sel = labels == label
        ax1.hist(p_fake[sel], bins=bins, alpha=0.5, color=colour, label=name)
        pf.add_trace(go.Histogram(x=p_fake[sel], xbins={"start": 0, "end": 1, "size": 0.04}, name=name,
                                  marker_color=colour, opacity=0.5), row=1, col=1)
    ax1.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax1.set_xlabel("p_fake")
    ax1.set_ylabel("videos")
    ax1.set_title("p_fake per class")
    ax1.legend()
    pf.add_vline(x=threshold, line_dash="dash", row=1, col=1)

    # Regions: the model's own predictions, spread over the projection by nearest neighbours.
    if len(proj) >= 2 and len(np.unique(predicted)) == 2:
        from sklearn.neighbors import KNeighborsClassifier

        pad = 0.1 * (np.ptp(proj, axis=0) + 1e-9)
        gx = np.linspace(proj[:, 0].min() - pad[0], proj[:, 0].max() + pad[0], 150)
        gy = np.linspace(proj[:, 1].min() - pad[1], proj[:, 1].max() + pad[1], 150)
        xx, yy = np.meshgrid(gx, gy)
        knn = KNeighborsClassifier(n_neighbors=min(5, len(proj))).fit(proj, predicted)
        zz = knn.predict_proba(np.c_[xx.ravel(), yy.ravel()])[:, 1].reshape(xx.shape)
        ax2.contourf(xx, yy, zz, levels=[0, 0.5, 1], colors=[REAL_COLOUR, FAKE_COLOUR], alpha=0.15)
        pf.add_trace(go.Contour(x=gx, y=gy, z=zz, showscale=False, contours={"start": 0.5, "end": 0.5, "size": 1},
                                colorscale=[[0, REAL_COLOUR], [1, FAKE_COLOUR]], opacity=0.15,
                                hoverinfo="skip", name="model decision"), row=1, col=2)
    for label, name, colour in ((0, "Real", REAL_COLOUR), (1, "Fake", FAKE_COLOUR)):
        sel = labels == label
        ax2.scatter(proj[sel, 0], proj[sel, 1], s=14, color=colour, edgecolors="k", linewidths=0.3, label=name)
        pf.add_trace(go.Scatter(x=proj[sel, 0], y=proj[sel, 1], mode="markers", name=f"{name} (true)",
                                marker={"color": colour, "size": 6, "line": {"width": 0.5, "color": "black"}},
                                text=[f"p_fake {v:.3f}" for v in p_fake[sel]]), row=1, col=2)
    ax2.set_xlabel(f"PC1 ({ratio[0]:.0%})")
    ax2.set_ylabel(f"PC2 ({ratio[1]:.0%})")
    ax2.set_title("Decision regions (model predictions, kNN in PCA)")
    ax2.legend()
    pf.update_layout(title="Decision boundaries", barmode="overlay", width=1100, height=460)
    return _save(fig, pf, out, "decision_boundaries")


def training_curves(history_path: Path, out: Path) -> dict[str, str]:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure
    from plotly.subplots import make_subplots

    hist = json.loads(Path(history_path).read_text(encoding="utf-8"))
    rows = hist["epochs"]
    ep = [r["epoch"] for r in rows]
    panels = [("Loss", "train_loss", "val_loss"), ("Accuracy", "train_acc", "val_acc"),
              ("Val AUC", None, "val_auc"), ("Learning rate", None, "lr")]
    fig = Figure(figsize=(10, 7))
    pf = make_subplots(rows=2, cols=2, subplot_titles=[p[0] for p in panels])
    for k, (title, train_key, val_key) in enumerate(panels):
        ax = fig.add_subplot(2, 2, k + 1)
        r, c = k // 2 + 1, k % 2 + 1
        if train_key:
            ax.plot(ep, [row[train_key] for row in rows], color=TRAIN_COLOUR, label="train")
            pf.add_trace(go.Scatter(x=ep, y=[row[train_key] for row in rows], name=f"train {title.lower()}",
                                    line={"color": TRAIN_COLOUR}), row=r, col=c)
        colour = VAL_COLOUR if train_key or val_key == "val_auc" else "black"
        values = [row[val_key] for row in rows]
        ax.plot(ep, values, color=colour, label="val" if val_key != "lr" else "lr")
        pf.add_trace(go.Scatter(x=ep, y=values, name=f"{val_key}", line={"color": colour}), row=r, col=c)
        if hist.get("best_epoch"):
            ax.axvline(hist["best_epoch"], color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if train_key:
            ax.legend()
    fig.suptitle(f"Training curves (best epoch {hist.get('best_epoch')})")
    fig.tight_layout()
    pf.update_layout(title=f"Training curves (best epoch {hist.get('best_epoch')})", height=650)
    return _save(fig, pf, out, "training_curves")


def reliability_diagram(points: dict[str, dict[str, list[float]]], out: Path) -> dict[str, str]:
    """Share of fakes against mean p_fake per bin (``research.calibrate.reliability``), before and
    after calibration; marker area follows the bin's count."""
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    pf = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                              line={"color": "grey", "dash": "dash"}))
    for name, colour in (("before", "#868e96"), ("after", "#1c7ed6")):
        pts = points.get(name) or {}
        if not pts.get("mean_p"):
            continue
        counts = np.asarray(pts["count"], float)
        size = 20 + 180 * counts / counts.max()
        label = "raw sigmoid" if name == "before" else "calibrated"
        ax.plot(pts["mean_p"], pts["fake_share"], color=colour, linewidth=1)
        ax.scatter(pts["mean_p"], pts["fake_share"], s=size, color=colour, alpha=0.7, label=label)
        pf.add_trace(go.Scatter(x=pts["mean_p"], y=pts["fake_share"], mode="lines+markers", name=label,
                                marker={"size": np.sqrt(size).tolist(), "color": colour},
                                text=[f"{int(c)} segments" for c in counts]))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean p_fake in the bin")
    ax.set_ylabel("share of fakes in the bin")
    ax.set_title("Reliability diagram (segments)")
    ax.legend()
    pf.update_layout(title="Reliability diagram (segments)", xaxis_title="mean p_fake in the bin",
                     yaxis_title="share of fakes in the bin", xaxis_range=[0, 1], yaxis_range=[0, 1],
                     width=560, height=520)
    return _save(fig, pf, out, "reliability_diagram")


def risk_coverage(data: dict[str, Any], out: Path) -> dict[str, str]:
    """Error rate against the share of videos answered, one curve per ranking, and the rule's point."""
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    pf = go.Figure()
    for (name, curve), colour in zip(data["curves"].items(), ("#1c7ed6", "#2f9e44", "#ae3ec9")):
        ax.plot(curve["coverage"], curve["risk"], color=colour, label=name)
        pf.add_trace(go.Scatter(x=curve["coverage"], y=curve["risk"], mode="lines", name=name, line={"color": colour}))
    point = data.get("operating_point") or {}
    if point.get("risk") is not None:
        ax.scatter([point["coverage"]], [point["risk"]], color=FAKE_COLOUR, zorder=3, label="the decision rule")
        pf.add_trace(go.Scatter(x=[point["coverage"]], y=[point["risk"]], mode="markers", name="the decision rule",
                                marker={"color": FAKE_COLOUR, "size": 11}))
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("share of videos answered")
    ax.set_ylabel("error rate among them")
    ax.set_title("Risk-coverage")
    ax.legend()
    pf.update_layout(title="Risk-coverage", xaxis_title="share of videos answered",
                     yaxis_title="error rate among them", xaxis_range=[0, 1], width=620, height=440)
    return _save(fig, pf, out, "risk_coverage")


def write_all(out: Path, data: Any, p_fake: np.ndarray, threshold: float, cm: list[list[int]],
              history_path: Path | None, predicted: np.ndarray) -> dict[str, str]:
    """Every figure for a set of cached videos (``CachedFeatures``) and their predictions."""
    out = Path(out)
    labels = data.labels.numpy().astype(int)
    style = data.style.numpy()
    video = np.concatenate([data.content.flatten(1).numpy(), style.mean(axis=1).reshape(len(labels), -1)], axis=1)
    video = (video - video.mean(axis=0)) / (video.std(axis=0) + 1e-8)  # content and style on one scale
    written: dict[str, str] = {}
    written |= confusion_matrix(cm, out)
    written |= temporal_style_patterns(style, labels, out)
    written |= style_patterns(style, labels, out)
    written |= decision_boundaries(video, labels, p_fake, predicted, threshold, out)
    if history_path is not None:
        written |= training_curves(history_path, out)
    else:
        logger.info("no training history found: training-curve figure skipped")
    return written
