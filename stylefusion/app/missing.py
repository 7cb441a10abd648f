"""Why the configured model cannot be loaded, and what to do: one text for the CLI and the app.

A newcomer's first command uses the default model, the ``model`` of the packaged Space manifest.
Until trained weights are published under that id (the manifest then sets ``model_placeholder:
false``), loading it fails, and the reason must not blame the user's setup. Both front ends say the
same thing, from here:

- :func:`why_not_loaded`: the reason in words: "no trained weights are published under this id
  yet" when the manifest marks the id a placeholder, and what the Hugging Face Hub said where its
  exception says it (not found, gated, unreachable, offline);
- :func:`next_steps`: what to do: ``--model``, ``stylefusion init`` and the demo checkpoint
  (the one the app serves, random weights and untrained; its folder when the app already built it).

The behaviour they share: an untrained stand-in is never used without saying so. The CLI stops
with one line (exit 2); the page serves the demo checkpoint, marked untrained, and says why in the
same words. Light imports only: the CLI uses this without gradio.
"""

from __future__ import annotations

import argparse

import re

from stylefusion.app import demo as demo_ckpt
from stylefusion.model_ref import ENV_MODEL

#: What the Hub's exception names mean, in words (the exception class is named in the loader's message).
HUB_REASONS = {
    "RepositoryNotFoundError": "the Hugging Face Hub has no public model under this id (not published, or "
                               "private and HF_TOKEN does not grant access)",
    "GatedRepoError": "it is gated on the Hugging Face Hub: accept its terms there and set HF_TOKEN",
    "RevisionNotFoundError": "the Hugging Face Hub has no such revision of it",
    "EntryNotFoundError": "its repo on the Hugging Face Hub lacks the checkpoint's files",
    "LocalEntryNotFoundError": "the Hugging Face Hub cannot be reached from here and it is not in the "
                               "local hub cache",
    "OfflineModeIsEnabled": "HF_HUB_OFFLINE=1 is set and it is not in the local hub cache",
    "ConnectError": "the Hugging Face Hub cannot be reached from here (no network)",
    "ConnectionError": "the Hugging Face Hub cannot be reached from here (no network)",
    "ConnectTimeout": "the Hugging Face Hub did not answer in time",
    "ReadTimeout": "the Hugging Face Hub did not answer in time",
    "HfHubHTTPError": "the Hugging Face Hub answered with an error",
}
_HUB_FAILURE = re.compile(r"cannot fetch it as a Hugging Face hub repo \((\w+)\)")


def placeholder_model() -> str:
    """The packaged manifest's ``model`` when it is marked a placeholder (no weights published), else ""."""
    try:
        from stylefusion.hub import read_space_manifest

        manifest = read_space_manifest()
    except Exception:  # noqa: BLE001 - a broken manifest is reported where it is resolved
        return ""
    return str(manifest.get("model") or "") if manifest.get("model_placeholder") else ""


def hub_offline() -> bool:
    from stylefusion.checkpoint import hub_offline as offline

    return offline()


def hub_reason(ref: str, error: str) -> str:
    """Why hub id ``ref`` did not load, without the id ("" when ``error`` is not a hub failure).

    ``error`` is the loader's one-line message, which names the Hub's exception. The placeholder of
    the packaged manifest is named as such, whatever the network says.
    """
    match = _HUB_FAILURE.search(error)
    if not ref or match is None:
        return ""
    name = match.group(1)
    hub = HUB_REASONS.get(name, f"the Hugging Face Hub could not give it ({name})")
    if hub_offline() and name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        hub = HUB_REASONS["OfflineModeIsEnabled"]
    if ref == placeholder_model():
        return f"no trained weights are published under this id yet ({hub})"
    return hub


def why_not_loaded(ref: str, error: str) -> str:
    """The reason ``ref`` did not load, naming it: the Hub's reason for a hub id (:func:`hub_reason`),
    else the loader's message, which already names the file and the reason."""
    reason = hub_reason(ref, error)
    return f"{ref}: {reason}" if reason else error


def demo_pointer() -> str:
    """The demo checkpoint as a ``--model`` value when the app already built it, else how to get it."""
    for preset in dict.fromkeys((demo_ckpt.demo_preset(), demo_ckpt.DEMO_PRESET)):
        folder = demo_ckpt.demo_folder(preset)
        if (folder / "config.json").is_file():
            return f"--model {folder} (the app's demo checkpoint)"
    return "`stylefusion serve` (the app builds and serves a demo checkpoint)"


def next_steps() -> str:
    """One line: what to run instead (CLI wording)."""
    return (f"give a trained checkpoint with --model DIR_OR_REPO_ID (or ${ENV_MODEL}); to try the pipeline "
            f"without one (random weights, no verdicts): {demo_pointer()}, or `stylefusion init --out DIR` "
            "then --model DIR")


def cli_error(ref: str, error: str, *, default: bool) -> str:
    """The CLI's one line when the model did not load (the app's banner gives the same reason)."""
    reason = hub_reason(ref, error)
    if default:
        text = f"no --model given, and the default model {ref} cannot be loaded: {reason or error}"
    else:
        text = f"{ref}: {reason}" if reason else error
    return f"{text}. To go on: {next_steps()}"



def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python app.py`` and ``stylefusion serve``, declared once here (no gradio needed, so
    ``stylefusion serve --help`` works without the ``app`` extra)."""
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or hub repo id (default: $STYLEFUSION_MODEL, else the model named "
                             "in the packaged Space.yaml)")
    parser.add_argument("--host", default=None, help="interface to bind (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs the network)")
    parser.add_argument("--no-demo", action="store_true",
                        help="when the model cannot be loaded, show why and serve nothing, instead of a random-weight "
                             "demo checkpoint (also: STYLEFUSION_NO_DEMO=1)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="number format of the feature extractors: fp32 (exact), bf16, or auto (default: bf16 "
                             "on CUDA and on CPUs with native bf16; fp32 elsewhere)")
    parser.add_argument("--live-window", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="the Live tab's window: each person on the webcam is judged every SECONDS (default: "
                             "$STYLEFUSION_LIVE_WINDOW, else the checkpoint's window_s capped at 10 s)")


def _positive_seconds(value: str) -> float:
    """A ``--live-window`` value: a positive number of seconds (argparse names the option on failure)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of seconds above 0, at most 3600")
    return seconds


__all__ = ["HUB_REASONS", "hub_reason", "why_not_loaded", "next_steps", "demo_pointer", "cli_error", "placeholder_model",
           "add_serve_arguments"]
