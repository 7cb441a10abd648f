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

- :mod:`~stylefusion.app.model`: loading the model (or the demo), the sentence on top of the page
  and the details behind it;
- :mod:`~stylefusion.app.missing`: why a model did not load and what to do, in the words the CLI
  uses too (no gradio needed);
- :mod:`~stylefusion.app.demo`: the demo checkpoint in the cache folder;
- :mod:`~stylefusion.app.privacy`: what the app keeps of an analysis, and when it deletes it;
- :mod:`~stylefusion.app.render`: the verdict (naming who and when), one row per person (their
  answer and face crops), the timeline, the plots of the chosen person and stretch;
- :mod:`~stylefusion.app.live_tab`: the Live tab (the browser's webcam through
  :class:`stylefusion.live.LiveSession`: a rolling verdict per person, a growing timeline; nothing
  kept after the session);
- :mod:`~stylefusion.app.page`: :class:`App` (state, upload checks, ``analyze``, the layout),
  :func:`build_demo`, :func:`serve`, :func:`main`.

Importing this package launches nothing and imports neither gradio nor torch: the names below are
loaded on first use, so that the CLI can read :mod:`~stylefusion.app.missing` and
:mod:`~stylefusion.app.demo` without the ``app`` extra. Tests use :class:`App` and
:func:`build_demo` directly.
"""

from __future__ import annotations

# First: `spaces` must be imported before anything touches CUDA (ZeroGPU).
from stylefusion.app._spaces import gpu  # noqa: I001

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it (imported on first use).
_LAZY = {
    **dict.fromkeys(("FIX_HINT", "LoadedModel", "load_model", "model_banner", "model_sentence"), "model"),
    **dict.fromkeys(("CONCURRENCY_LIMIT", "MAX_DURATION_S", "MAX_PEOPLE_ROWS", "MAX_UPLOAD_MB", "OUTPUTS",
                     "QUEUE_MAX_SIZE", "STAGES", "App", "build_demo", "example_videos", "main", "serve"), "page"),
    **dict.fromkeys(("EXPLANATION", "PersonRow", "confidence_figure", "explanation_markdown", "find_segment",
                     "main_segment", "person_line", "person_rows", "plot_notes", "segment_choices",
                     "style_pattern_figure", "summary", "temporal_figure", "timeline_figure", "verdict_markdown",
                     "where"), "render"),
    **dict.fromkeys(("KEEP_S", "Retention", "retention_markdown"), "privacy"),
}
_SUBMODULES = ("demo", "live_tab", "missing", "model", "page", "privacy", "render")

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.app.model import FIX_HINT, LoadedModel, load_model, model_banner, model_sentence
    from stylefusion.app.page import (CONCURRENCY_LIMIT, MAX_DURATION_S, MAX_PEOPLE_ROWS, MAX_UPLOAD_MB, OUTPUTS,
                                      QUEUE_MAX_SIZE, STAGES, App, build_demo, example_videos, main, serve)
    from stylefusion.app.privacy import KEEP_S, Retention, retention_markdown
    from stylefusion.app.render import (EXPLANATION, PersonRow, confidence_figure, explanation_markdown,
                                        find_segment, main_segment, person_line, person_rows, plot_notes,
                                        segment_choices, style_pattern_figure, summary, temporal_figure,
                                        timeline_figure, verdict_markdown, where)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["gpu", *sorted(_LAZY)]
