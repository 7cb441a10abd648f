"""The demo checkpoint: what the app serves when the configured model cannot be loaded.

A fresh machine offline (or a Space before trained weights are published) has no checkpoint to
load. Rather than a page whose Analyze button is dead, the app then serves a checkpoint with the
full preset's architecture and random weights, marked untrained, so every stage runs on a real
video and the page shows the crops and plots (and, as for any untrained head, no verdict).

It is built once, on first start, in the user's cache folder (:func:`cache_dir`) as
``demo-<preset>-<version>/``, and reused while it loads. It is written to a temporary folder beside
it and renamed into place, so two apps starting at once, or a crash while writing, never leave a
half checkpoint where the next start would look.

Environment: ``STYLEFUSION_CACHE`` (the cache folder), ``STYLEFUSION_NO_DEMO=1`` (no demo),
``STYLEFUSION_DEMO_PRESET`` (``full`` by default; ``tiny`` makes tests fast).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stylefusion import __version__
from stylefusion.errors import StyleFusionError

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.detector import StyleFusionDetector

logger = logging.getLogger(__name__)

ENV_CACHE = "STYLEFUSION_CACHE"
ENV_NO_DEMO = "STYLEFUSION_NO_DEMO"
ENV_DEMO_PRESET = "STYLEFUSION_DEMO_PRESET"
DEMO_PRESET = "full"
DEMO_SEED = 0
#: Temporary build folders older than this are left over from a crash and removed.
STALE_BUILD_S = 3600.0


def cache_dir() -> Path:
    """``$STYLEFUSION_CACHE``, else ``$XDG_CACHE_HOME/stylefusion``, else ``~/.cache/stylefusion``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "stylefusion"
    return Path.home() / ".cache" / "stylefusion"


def demo_disabled() -> bool:
    """True when ``STYLEFUSION_NO_DEMO`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(ENV_NO_DEMO, "").strip().lower() in ("1", "true", "yes", "on")


def demo_preset() -> str:
    return os.environ.get(ENV_DEMO_PRESET, "").strip() or DEMO_PRESET


def demo_folder(preset: str | None = None) -> Path:
    """Where the demo checkpoint of ``preset`` lives (it may not exist yet)."""
    return cache_dir() / f"demo-{preset or demo_preset()}-{__version__}"


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_stale_builds(folder: Path) -> None:
    """Temporary folders of builds that crashed (old ones only: a build may be running now)."""
    for tmp in folder.parent.glob(f".{folder.name}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_BUILD_S:
                _remove(tmp)
        except OSError:
            pass


def build_demo_checkpoint(preset: str | None = None) -> Path:
    """Write the demo checkpoint of ``preset`` (random weights, untrained) into place; returns its folder.

    The checkpoint is written in a temporary folder beside the target and renamed to it. When
    another process renamed its own first, that one is kept and this build is thrown away.
    """
    from stylefusion.detector import init_checkpoint

    preset = preset or demo_preset()
    folder = demo_folder(preset)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(folder)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    except OSError as exc:
        raise StyleFusionError(f"{folder.parent}: cannot create the demo checkpoint folder "
                               f"({exc.strerror or exc}); set ${ENV_CACHE} to a writable folder") from None
    t0 = time.perf_counter()
    try:
        init_checkpoint(preset, tmp, seed=DEMO_SEED)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
            logger.info("another process built %s first; using it", folder)
            _remove(tmp)
    except OSError as exc:
        _remove(tmp)
        raise StyleFusionError(f"{folder}: cannot write the demo checkpoint ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise
    logger.info("built the demo checkpoint (%s preset, random weights) in %s in %.1f s",
                preset, folder, time.perf_counter() - t0)
    return folder


def load_demo(preset: str | None = None) -> tuple["StyleFusionDetector", Path]:
    """The demo detector and its folder: loaded from the cache, built first when missing or broken.

    Raises:
        StyleFusionError: it can be neither loaded nor built (e.g. a read-only cache folder).
    """
    from stylefusion.detector import StyleFusionDetector

    preset = preset or demo_preset()
    folder = demo_folder(preset)
    if folder.is_dir():
        try:
            return StyleFusionDetector.from_pretrained(folder), folder
        except StyleFusionError as exc:
            logger.warning("the cached demo checkpoint does not load (%s); building it again", exc)
            aside = folder.with_name(f".{folder.name}.broken-{os.getpid()}.tmp")
            try:
                os.rename(folder, aside)
            except OSError:
                pass  # another process moved it already
            _remove(aside)
    folder = build_demo_checkpoint(preset)
    return StyleFusionDetector.from_pretrained(folder), folder


__all__ = ["cache_dir", "demo_disabled", "demo_preset", "demo_folder", "build_demo_checkpoint", "load_demo",
           "ENV_CACHE", "ENV_NO_DEMO", "ENV_DEMO_PRESET", "DEMO_PRESET"]
