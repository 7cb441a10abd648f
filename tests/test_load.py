"""Many users at once: `python app.py` on 127.0.0.1, 8 concurrent gradio_client callers, 40 requests.

Good (the carphone clip) and bad (carphone cut before its moov box) uploads are mixed. Every
request must be answered correctly (good -> the result outputs, bad -> a clear "Cannot analyse this
file" error), the app's queue concurrency limit must hold (measured from the app's own log: each
analysis logs its end time and duration), and the app's RSS must come back near its level after the
first request. The checkpoint is the tiny preset with 8 frames per video, to keep the run short.
"""

from __future__ import annotations

import json
import queue
import random
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("gradio_client")
import hostile  # noqa: E402
from appserver import serve_app  # noqa: E402
from helpers import load_app, proc_status  # noqa: E402

CALLERS = 8
REQUESTS = 40
REQUEST_TIMEOUT_S = 300
RSS_SLACK = 300 * 2**20


def _rss(pid: int) -> int:
    return proc_status("VmRSS", pid)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("load_ckpt")
    hostile.fast_checkpoint(ckpt)
    log_path = tmp_path_factory.mktemp("load_server") / "app.log"
    with serve_app(ckpt, log_path, timeout=180) as (url, proc):
        yield url, proc, log_path


def _intervals(log_text: str) -> list[tuple[float, float]]:
    """(start, end) of each successful analysis, from 'TIME INFO ...: analysed X in S s' lines."""
    out = []
    for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+: analysed .* in ([\d.]+)s:", log_text, re.M):
        end = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((end - float(m.group(2)), end))
    return out


def _max_overlap(intervals: list[tuple[float, float]], tolerance: float = 0.02) -> int:
    events = sorted([(s + tolerance, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.timeout(900)
def test_concurrent_callers(server, carphone, tmp_path):
    from gradio_client import Client, handle_file

    url, proc, log_path = server
    limit = load_app().CONCURRENCY_LIMIT  # what the served app queues with
    at_report = load_app().OUTPUTS.index("report")  # which of /detect's outputs is the JSON report
    bad = tmp_path / "corrupt upload.mp4"
    data = carphone.read_bytes()
    bad.write_bytes(data[: data.rfind(b"moov") - 4])  # no index: unreadable

    first = Client(url, verbose=False).predict(handle_file(str(carphone)), api_name="/detect")
    assert json.loads(Path(first[at_report]).read_text())["label"] == "untrained"
    time.sleep(1.0)
    rss_after_first = _rss(proc.pid)

    rng = random.Random(8)
    kinds = ["good"] * (REQUESTS // 2) + ["bad"] * (REQUESTS - REQUESTS // 2)
    rng.shuffle(kinds)
    todo: queue.Queue = queue.Queue()
    for i, k in enumerate(kinds):
        todo.put((i, k))
    records: list[dict] = []
    lock = threading.Lock()
    peak = {"rss": rss_after_first, "stop": False}

    def sample():
        while not peak["stop"]:
            peak["rss"] = max(peak["rss"], _rss(proc.pid))
            time.sleep(0.1)

    def caller():
        client = Client(url, verbose=False)
        while True:
            try:
                i, kind = todo.get_nowait()
            except queue.Empty:
                return
            path = carphone if kind == "good" else bad
            t0 = time.time()
            rec = {"i": i, "kind": kind, "start": t0}
            try:
                out = client.submit(handle_file(str(path)), api_name="/detect").result(timeout=REQUEST_TIMEOUT_S)
                report = json.loads(Path(out[at_report]).read_text())
                rec.update(ok=True, label=report["label"], frames=len(report["frames"]))
            except Exception as exc:  # noqa: BLE001 - the message is what we check
                rec.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            rec["end"] = time.time()
            with lock:
                records.append(rec)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S * 2)
    wall = time.time() - t0
    assert not any(t.is_alive() for t in threads), "callers still waiting"
    time.sleep(2.0)
    peak["stop"] = True
    rss_end = _rss(proc.pid)
    assert proc.poll() is None, "the app died under load"

    failures = []
    for r in records:
        if r["kind"] == "good" and not (r.get("ok") and r["label"] == "untrained" and r["frames"] == 8):
            failures.append(r)
        if r["kind"] == "bad" and (r.get("ok") or "Cannot analyse this file" not in r["error"]
                                   or "corrupt upload.mp4" not in r["error"] or "Traceback" in r["error"]):
            failures.append(r)
    intervals = [iv for iv in _intervals(log_path.read_text()) if iv[1] >= t0 - 0.5]
    overlap = _max_overlap(intervals)
    client_overlap = _max_overlap([(r["start"], r["end"]) for r in records])
    latencies = sorted(r["end"] - r["start"] for r in records)
    print(f"\nload: {len(records)} requests from {CALLERS} callers in {wall:.1f} s "
          f"({sum(k == 'good' for k in kinds)} good, {sum(k == 'bad' for k in kinds)} bad), "
          f"{len(failures)} failures; server-side analyses {len(intervals)}, max concurrent {overlap} "
          f"(limit {limit}); requests in flight at once (client side) {client_overlap}; "
          f"latency median {latencies[len(latencies) // 2]:.1f} s, max {latencies[-1]:.1f} s; "
          f"RSS after first request {rss_after_first / 2**20:.0f} MB, peak {peak['rss'] / 2**20:.0f} MB, "
          f"after {rss_end / 2**20:.0f} MB")
    assert len(records) == REQUESTS
    assert not failures, [(r["kind"], r.get("label"), r.get("error")) for r in failures[:5]]
    assert len(intervals) == REQUESTS // 2, "every good request should be logged as analysed once"
    assert overlap <= limit
    assert client_overlap > 1, "the callers did not actually overlap"
    assert rss_end - rss_after_first < RSS_SLACK
