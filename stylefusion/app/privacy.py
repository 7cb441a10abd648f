"""What the app keeps of a visitor's analysis, and for how long: the promise on the page, kept in code.

The page promises that a video is not kept. Gradio writes every upload, every gallery image and
every downloadable file into its cache folder and, by default, never removes them; the app used to
add a temporary folder per report. Here the app keeps that promise in three ways:

- the upload is deleted as soon as its analysis ends, whether it succeeded or failed
  (:meth:`Retention.release_upload`); a request cancelled before it ran leaves its upload to the
  next point;
- Gradio's own cache deletion (``gr.Blocks(delete_cache=(sweep_s, keep_s))``) removes everything
  this page put in its cache, the face crops shown and the copy of the report it serves included,
  ``keep_s`` seconds after it was written, checked every ``sweep_s`` seconds, and all of it when
  the server stops;
- the JSON report is written into one folder of the app's (:meth:`Retention.write_report`), one
  subfolder per analysis, deleted by a sweeper thread (every ``sweep_s``) once older than
  ``keep_s``, and the whole folder when the app stops.

``keep_s`` is :data:`KEEP_S` (long enough to read the page and download the report, short enough
to be a promise) unless ``$STYLEFUSION_KEEP_S`` says otherwise (the privacy test uses a few
seconds). :func:`retention_markdown` says all of this on the page, with the times.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger("stylefusion.app")

#: Seconds the crops shown and the report stay downloadable after an analysis.
KEEP_S = 600
ENV_KEEP_S = "STYLEFUSION_KEEP_S"


def keep_seconds() -> int:
    """``$STYLEFUSION_KEEP_S`` when it is a whole number of seconds >= 1, else :data:`KEEP_S`."""
    raw = os.environ.get(ENV_KEEP_S, "").strip()
    try:
        value = int(raw)
    except ValueError:
        if raw:
            logger.warning("ignoring %s=%r: not a whole number of seconds", ENV_KEEP_S, raw)
        return KEEP_S
    return value if value >= 1 else KEEP_S


def sweep_seconds(keep_s: int) -> int:
    """How often Gradio's cache is swept: a tenth of ``keep_s``, between 1 s and 60 s."""
    return max(1, min(60, keep_s // 10))


def deleted_within_s(keep_s: int) -> int:
    """The promise: nothing of an analysis is on disk this many seconds after it ended."""
    return keep_s + sweep_seconds(keep_s)


def duration_words(seconds: int) -> str:
    """``11 minutes``, ``1 minute``, ``5 seconds``: a duration as the page says it (rounded up)."""
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def retention_markdown(keep_s: int) -> str:
    """Exactly what the server keeps of an analysis, and for how long (shown under the upload box)."""
    within = duration_words(deleted_within_s(keep_s))
    return (f"Your video is deleted from this server as soon as its analysis ends (one that is refused or "
            f"never analysed, within {within}). The face crops shown "
            f"and the JSON report are deleted within {within}: download "
            "the report before then. Nothing else is stored: the server's log notes how long each analysis "
            "took and its answer, not the file's name.")


class Retention:
    """The app's own files of analyses (the reports) and the uploads it must delete.

    One instance per :class:`~stylefusion.app.page.App`. Thread-safe: Gradio calls the validator
    and the analysis from worker threads.
    """

    def __init__(self, keep_s: int | None = None) -> None:
        self.keep_s = keep_seconds() if keep_s is None else int(keep_s)
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._pending: dict[str, int] = {}
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._protected: set[str] = set()

    # -- uploads ----------------------------------------------------------------------------------
    def protect(self, paths: Iterable[str]) -> None:
        """Files never deleted as uploads (Gradio's copies of the page's example videos)."""
        with self._lock:
            self._protected.update(str(Path(p).resolve()) for p in paths)

    def claim_upload(self, path: str | None) -> None:
        """A request for ``path`` was accepted (the event validator): keep the file until it ran.

        Gradio stores an upload under a hash of its content, so two visitors sending the same file
        share one path: the first analysis to end must not delete the second one's input.
        """
        if path:
            key = str(Path(path).resolve())
            with self._lock:
                self._pending[key] = self._pending.get(key, 0) + 1

    def release_upload(self, path: str | None, upload_root: str | Path) -> bool:
        """An analysis of ``path`` ended: delete the file (and its emptied folder) when it is an
        upload in ``upload_root`` that no accepted request still waits for. True when deleted.

        Files outside ``upload_root`` (a path given to the API in-process, an example) are never touched.
        """
        if not path:
            return False
        file = Path(path).resolve()
        key = str(file)
        root = Path(upload_root).resolve()
        with self._lock:
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
                return False
            self._pending.pop(key, None)
            if key in self._protected or root not in file.parents:
                return False
            try:
                file.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                logger.warning("could not delete an upload: %s", exc.strerror or exc)
                return False
            parent = file.parent
            if parent != root:
                try:
                    parent.rmdir()  # Gradio's per-upload folder, when nothing else is in it
                except OSError:
                    pass
        return True

    # -- reports ----------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The app's folder of reports, made on first use and removed when the process exits."""
        with self._lock:
            if self._folder is None or not self._folder.is_dir():
                self._folder = Path(tempfile.mkdtemp(prefix="stylefusion-reports-"))
                atexit.register(self.close)
            return self._folder

    def write_report(self, doc: dict[str, Any]) -> str:
        """Write the JSON report ``doc`` (``DetectionResult.to_dict()``) to download; deleted after ``keep_s``.

        The file keeps the video's name (``<stem>.stylefusion.json``, what the visitor downloads),
        in a subfolder of its own so that two reports of files with the same name never collide.
        """
        sub = self.folder / uuid.uuid4().hex
        sub.mkdir()
        stem = re.sub(r"[^\w.-]+", "_", Path(str(doc.get("path") or "video")).stem)[:80] or "video"
        path = sub / f"{stem}.stylefusion.json"
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        self._start_sweeper()
        return str(path)

    def _start_sweeper(self) -> None:
        """One daemon thread per app deletes the reports older than ``keep_s``, every ``sweep_s``."""
        with self._lock:
            if self._sweeper is not None and self._sweeper.is_alive():
                return
            self._stop.clear()
            self._sweeper = threading.Thread(target=self._sweep_loop, name="stylefusion-report-sweeper", daemon=True)
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(sweep_seconds(self.keep_s)):
            self.sweep()

    def sweep(self, now: float | None = None) -> None:
        """Delete the reports written more than ``keep_s`` seconds ago."""
        folder = self._folder
        if folder is None:
            return
        now = time.time() if now is None else now
        try:
            subs = list(folder.iterdir())
        except OSError:
            return
        for sub in subs:
            try:
                if now - sub.stat().st_mtime > self.keep_s:
                    shutil.rmtree(sub, ignore_errors=True)
            except OSError:
                continue

    def close(self) -> None:
        """Delete every report now (the app stops)."""
        self._stop.set()
        with self._lock:
            folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


__all__ = ["KEEP_S", "ENV_KEEP_S", "Retention", "keep_seconds", "sweep_seconds", "deleted_within_s",
           "duration_words", "retention_markdown"]
