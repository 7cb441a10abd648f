"""Which detector the app serves, and the banner that says so.

The app loads its model once, at start, and never raises doing it: a missing folder, a bad repo id
or no network become :attr:`LoadedModel.error`, shown on the page with how to fix it. Unless told
not to, the app then serves the random-weight demo checkpoint (:mod:`stylefusion.app.demo`), and
the banner says plainly that it does and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stylefusion.app import demo as demo_ckpt
from stylefusion.detector import StyleFusionDetector
from stylefusion.errors import StyleFusionError
from stylefusion.model_ref import ENV_MODEL, resolve_model_ref

logger = logging.getLogger("stylefusion.app")

FIX_HINT = (
    "Point the app at a checkpoint:\n"
    "- `stylefusion serve --model DIR_OR_REPO_ID` or `python app.py --model DIR_OR_REPO_ID` (a folder with "
    "`config.json` + `model.safetensors`, or a Hugging Face repo id)\n"
    f"- or set `{ENV_MODEL}=DIR_OR_REPO_ID` before starting the app\n"
    "- no checkpoint yet? `stylefusion init --preset tiny --out DIR` makes a random, untrained one "
    "(for trying the app; it gives no verdicts), and `stylefusion convert --help` shows how to "
    "build one from the upstream pSp and Kinetics weights."
)


@dataclass
class LoadedModel:
    """The detector the app serves, or why there is none (both shown on the page).

    ``ref`` is the configured model and ``error`` why it could not be loaded (empty when it was).
    When the demo checkpoint stands in for it, ``demo_folder`` is where that lives; when the demo
    could not be served either, ``demo_error`` says why.
    """

    ref: str
    detector: StyleFusionDetector | None = None
    error: str = ""
    demo_folder: Path | None = None
    demo_error: str = ""

    @property
    def is_demo(self) -> bool:
        return self.demo_folder is not None


def _one_line(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]


def load_model(ref: str | None = None, *, demo_fallback: bool = False, precision: str = "auto") -> LoadedModel:
    """Load the model the app serves; never raises.

    Args:
        ref: a checkpoint folder or hub repo id; None or "" resolves it as the CLI does
            (``$STYLEFUSION_MODEL``, then the packaged Space manifest's ``model``).
        demo_fallback: when ``ref`` cannot be loaded, serve the demo checkpoint (built on first use).
        precision: the detector's ``auto`` / ``fp32`` / ``bf16`` (:mod:`stylefusion.precision`).
    """
    try:
        ref = resolve_model_ref(ref)
    except StyleFusionError as exc:
        loaded = LoadedModel(ref="", error=str(exc))
    else:
        try:
            loaded = LoadedModel(ref=ref, detector=StyleFusionDetector.from_pretrained(ref, precision=precision))
        except StyleFusionError as exc:
            loaded = LoadedModel(ref=ref, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the app must start and explain
            logger.exception("unexpected error while loading %s", ref)
            loaded = LoadedModel(ref=ref, error=_one_line(exc))
    if not loaded.error:
        return loaded
    logger.warning("model not loaded: %s", loaded.error)
    if demo_fallback:
        try:
            loaded.detector, loaded.demo_folder = demo_ckpt.load_demo()
            loaded.detector.set_precision(precision)
        except StyleFusionError as exc:
            loaded.demo_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - still start, and say why
            logger.exception("unexpected error while preparing the demo checkpoint")
            loaded.demo_error = _one_line(exc)
        if loaded.demo_error:
            logger.warning("demo checkpoint not available: %s", loaded.demo_error)
        else:
            logger.warning("serving the random-weight demo checkpoint %s instead", loaded.demo_folder)
    return loaded


def _load_error(loaded: LoadedModel) -> str:
    """Why the model did not load, naming it once, in the words the CLI uses (:mod:`~stylefusion.app.missing`)."""
    from stylefusion.app.missing import why_not_loaded

    text = why_not_loaded(loaded.ref, loaded.error)
    if loaded.ref and text.startswith(loaded.ref):
        return f"`{loaded.ref}`{text[len(loaded.ref):]}"
    return f"`{loaded.ref or '(none)'}`: {text}"


def model_sentence(loaded: LoadedModel) -> str:
    """The one plain sentence at the top of the page: can this page's answers be trusted as verdicts?"""
    from stylefusion.app.missing import placeholder_model

    if loaded.is_demo:
        why = ("no trained model is published yet" if loaded.ref and loaded.ref == placeholder_model()
               else "the trained model could not be loaded")
        return (f"**Demo: no verdicts.** {why[0].upper() + why[1:]}, so this page runs an untrained model with "
                "random weights: it finds and follows the faces in your video and shows what it extracts, but "
                "it cannot tell you whether they are fake.")
    if loaded.detector is None:
        return "**Not working yet: no model is loaded**, so Analyze is off. The details below say why and how to fix it."
    cfg = loaded.detector.config
    if not cfg.trained:
        return ("**No verdicts: this model is untrained** (random weights). The page finds and follows the faces "
                "in your video and shows what it extracts, but it cannot tell you whether they are fake.")
    return ("**Upload a video to check whether a face in it was manipulated.** Each answer says who and when, "
            "and how often this model was wrong on videos it had not seen.")


def model_banner(loaded: LoadedModel) -> str:
    """The details behind :func:`model_sentence` (a collapsed section): which checkpoint answers, and
    whether its answers are verdicts; when it is a stand-in, why and how to change it."""
    if loaded.is_demo:
        cfg = loaded.detector.config
        return (
            "### Demo mode: random weights, no verdicts\n"
            f"The configured model could not be loaded: {_load_error(loaded)}.\n\n"
            f"So that the page still works, it serves a **demo checkpoint with random weights** (the "
            f"`{cfg.preset}` preset, {cfg.num_frames} frames per person and stretch, marked **untrained**), "
            f"built on first start in `{loaded.demo_folder}`. Analyze runs every stage on your video and "
            "shows the people it finds, their face crops and style plots, but **no verdict**: a random head's "
            "score would mean nothing. The command line gives the same reason and stops instead "
            "(`stylefusion detect` without `--model`).\n\n"
            f"{FIX_HINT}\n- `--no-demo` (or `{demo_ckpt.ENV_NO_DEMO}=1`) starts without the "
            "demo: the page then only explains what is missing."
        )
    if loaded.detector is None:
        text = f"### The model could not be loaded\n{_load_error(loaded)}.\n\n{FIX_HINT}"
        if loaded.demo_error:
            text += f"\n\nThe random-weight demo checkpoint could not be served either: {loaded.demo_error}"
        return text
    cfg = loaded.detector.config
    text = (f"**Model:** `{loaded.ref}` (preset `{cfg.preset}`, {cfg.num_frames} frames per person in "
            f"stretches of up to {cfg.window_s:g} s). ")
    if cfg.trained:
        summary = cfg.training.summary if cfg.training is not None else "an unnamed dataset"
        text += f"Head trained on {summary}; decision threshold {cfg.threshold:.2f}"
        cal = cfg.calibration
        if cal is None:
            text += (" (**uncalibrated checkpoint**: raw probabilities, a fixed uncertain band, no out-of-domain "
                     "check).")
        else:
            text += f" (policy `{cfg.threshold_policy}`"
            if cal.val_fpr is not None and cal.val_tpr is not None:
                text += (f": on validation data it flagged {cal.val_fpr:.0%} of real videos and caught "
                         f"{cal.val_tpr:.0%} of fakes")
            text += f"); probabilities calibrated (temperature {cal.temperature:.2f})."
    else:
        text += ("**This checkpoint is untrained**: its classifier has random weights, so the app "
                 "shows the people it finds, their faces and style plots, but no verdict.")
    return text


__all__ = ["LoadedModel", "load_model", "model_sentence", "model_banner", "FIX_HINT"]
