"""Helpers shared by several test files: checkpoint copies, a pickle that runs code, peak RSS, the app.

Video writers live in ``videogen.py``; the hostile inputs and their worker in ``hostile.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------
def copy_ckpt(src: Path, tmp: Path, name: str | None = None) -> Path:
    """A copy of checkpoint folder ``src`` in a new folder under ``tmp`` (to damage it freely)."""
    dst = Path(tmp) / (name or _fresh_name(Path(tmp), "ckpt"))
    shutil.copytree(src, dst)
    return dst


def broken_ckpt(src: Path, tmp: Path, **changes) -> Path:
    """A copy of ``src`` whose ``config.json`` has ``changes`` applied, for tests that expect the
    loader to refuse it. Values are written as given (NaN and Infinity as the JSON extensions)."""
    bad = copy_ckpt(src, tmp)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(changes)
    (bad / "config.json").write_text(json.dumps(cfg))
    return bad


def _fresh_name(folder: Path, stem: str) -> str:
    i = 0
    while (folder / f"{stem}{i}").exists():
        i += 1
    return f"{stem}{i}"


class RunsCode:
    """Unpickling this runs ``touch MARKER``: the classic malicious checkpoint. Tests save it with
    ``torch.save`` or ``pickle`` and assert that the marker never appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


# ----------------------------------------------------------------------------------------------
# memory (Linux /proc)
# ----------------------------------------------------------------------------------------------
def proc_status(key: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` field in bytes (``VmRSS``, ``VmHWM``), 0 where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def rss_peak_delta(fn: Callable[[], object]) -> int:
    """Peak RSS growth (bytes) while ``fn`` runs in this process (skips where the peak cannot be reset)."""
    if not reset_peak_rss():
        pytest.skip("cannot reset the peak RSS on this system")
    before = proc_status("VmRSS")
    fn()
    return proc_status("VmHWM") - before


# ----------------------------------------------------------------------------------------------
# the web app
# ----------------------------------------------------------------------------------------------
def load_app():
    """The web app package, :mod:`stylefusion.app` (the root ``app.py`` only launches it): the one
    import to change if it moves."""
    import stylefusion.app as app

    return app


def main_segment(doc: dict) -> dict:
    """The first judged segment of person 0 (the most present person of the first stretch) in the
    ``faces.json`` that ``stylefusion faces`` writes."""
    person = doc["people"][0]
    assert person["id"] == 0, [p["id"] for p in doc["people"]]
    return next(s for s in person["segments"] if s["judged"])


class NoSeek:
    """A PyAV container whose demuxer refuses to seek, as one without an index does; the refused
    seeks are appended to ``seeks``."""

    def __init__(self, container, seeks: list):
        self._container, self._seeks = container, seeks

    def __getattr__(self, name):
        return getattr(self._container, name)

    def seek(self, *args, **kwargs):
        import av

        self._seeks.append(args)
        raise av.FFmpegError(1, "Operation not permitted")
