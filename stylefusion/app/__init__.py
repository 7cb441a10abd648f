"""StyleFusion web app: upload a video, get a verdict you can read and the evidence behind it.

A thin Gradio layer over the library: every number on the page comes from
``StyleFusionDetector.detect`` and the JSON report is exactly ``DetectionResult.to_dict()``, so the
app, the CLI and the Python API give the same answer for the same file. Needs the ``app`` extra
(``pip install "stylefusion[app]"``).

Run it with ``stylefusion serve [--model ID_OR_DIR] [--host H] [--port P] [--share] [--no-demo]``,
or ``python app.py`` with the same arguments (the repository's and a Space's entry point, which
call :func:`main`). The model is ``--model``, else ``$STYLEFUSION_MODEL``, else the ``model`` of the
packaged Space manifest (:func:`stylefusion.model_ref.resolve_model_ref`, as the CLI); it is loaded
once at start. When it cannot be loaded the page says why and how to point the app at a
checkpoint, and serves a random-weight demo checkpoint meanwhile (built once in the user's cache
folder; ``--no-demo`` or ``STYLEFUSION_NO_DEMO=1`` turns that off), because a page that explains
beats a Space stuck in "Runtime error".

- :mod:`~stylefusion.app.model`: loading the model (or the demo) and the banner that says which;
- :mod:`~stylefusion.app.demo`: the demo checkpoint in the cache folder;
- :mod:`~stylefusion.app.render`: the verdict (naming who and when), one row per person (their
  answer and face crops), the timeline, the main segment's plots, the report;
- :mod:`~stylefusion.app.page`: :class:`App` (state, upload checks, ``analyze``, the layout),
  :func:`build_demo`, :func:`serve`, :func:`main`.

Importing this package launches nothing: tests use :class:`App` and :func:`build_demo` directly.
"""

from __future__ import annotations

# First: `spaces` must be imported before anything touches CUDA (ZeroGPU).
from stylefusion.app._spaces import gpu  # noqa: I001

from stylefusion.app.model import FIX_HINT, LoadedModel, load_model, model_banner
from stylefusion.app.page import (CONCURRENCY_LIMIT, MAX_DURATION_S, MAX_PEOPLE_ROWS, MAX_UPLOAD_MB, OUTPUTS,
                                  QUEUE_MAX_SIZE, STAGES, App, build_demo, example_videos, main, serve)
from stylefusion.app.render import (EXPLANATION, PersonRow, confidence_figure, explanation_markdown, gallery_items,
                                    main_segment, person_line, person_rows, style_pattern_figure, summary,
                                    temporal_figure, timeline_figure, verdict_markdown, where, write_report)

__all__ = ["App", "build_demo", "serve", "main", "LoadedModel", "load_model", "model_banner", "FIX_HINT",
           "example_videos", "gpu", "STAGES", "OUTPUTS", "MAX_UPLOAD_MB", "MAX_DURATION_S", "MAX_PEOPLE_ROWS",
           "CONCURRENCY_LIMIT", "QUEUE_MAX_SIZE", "EXPLANATION", "verdict_markdown", "where", "PersonRow",
           "person_rows", "person_line", "main_segment", "gallery_items", "timeline_figure", "temporal_figure",
           "style_pattern_figure", "confidence_figure", "explanation_markdown", "summary", "write_report"]
