"""Exceptions of StyleFusion.

Every failure a user can cause (a bad video, a bad checkpoint, a bad dataset layout) raises a
subclass of :class:`StyleFusionError` whose message is one line that names the file and the reason,
so the CLI and the app can show it as it is instead of a library traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: How many offending keys an error message lists before it says "(+N more)".
MAX_LISTED_KEYS = 6


def format_keys(keys: Iterable[str], limit: int = MAX_LISTED_KEYS) -> str:
    """Sorted keys for a one-line error message: the first ``limit`` of them and how many more."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


class StyleFusionError(Exception):
    """Base class of every error StyleFusion raises on purpose."""


class VideoReadError(StyleFusionError):
    """A video file cannot be read: missing, empty, truncated, not a video, no frames, bad codec."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(StyleFusionError):
    """A checkpoint folder or file is missing, malformed, unsafe or does not match the model."""


class ConfigError(StyleFusionError):
    """A configuration value is invalid (out of range, wrong type, unknown field)."""


class DatasetLayoutError(StyleFusionError):
    """A dataset folder does not have the layout its adapter expects."""
