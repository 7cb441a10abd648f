"""Run the web app on a free 127.0.0.1 port for the tests that talk to the served app."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The repository's entry point (``python app.py``), which launches :mod:`stylefusion.app`.
APP = REPO / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, proc: subprocess.Popen, log_path: Path, timeout: float, what: str = "the app") -> None:
    """Poll ``url`` until it answers 200; fail with the end of the log if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {timeout:.0f} s:\n"
                        f"{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serve_app(model: str | Path | None, log_path: Path, timeout: float = 180, threads: str = "2", *,
              command: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
              cwd: str | Path = REPO) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start the app, wait until its page answers, yield (url, process), stop it.

    ``command`` defaults to ``python app.py``; ``--model MODEL`` (unless ``model`` is None: then the
    app resolves its model itself) and ``--host 127.0.0.1 --port PORT`` are appended. ``env`` adds
    to (or, with a None value, removes from) the environment. Only the loopback address is used. A
    server that exits or does not answer in ``timeout`` seconds fails the test with its log's end.
    """
    port = free_port()
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
    full_env.pop("STYLEFUSION_MODEL", None)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    cmd = list(command or [sys.executable, str(APP)])
    if model is not None:
        cmd += ["--model", str(model)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_page(url, proc, log_path, timeout, what=" ".join(Path(c).name for c in cmd[:2]))
        yield url, proc
    finally:
        stop(proc)


#: Debian's chromium, which playwright drives (no browser download).
CHROMIUM = Path("/usr/bin/chromium")


def chromium_browser(pw):
    """Headless Debian chromium through playwright, or a skip that says what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium to run the browser check")
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync"])

