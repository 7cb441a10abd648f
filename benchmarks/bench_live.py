"""Live watching (issue 24): does the detector keep up with a stream of 1, 2 and 4 people?

    python benchmarks/bench_live.py [--people 1,2,4] [--seconds 20] [--window 4] [--full]
                                    [--precision auto] [--threads N]
    python benchmarks/bench_live.py --long 3600 [--window 10]    # memory over an hour of stream

For each number of people P, a generated video (``_common.people_video``: P copies of the carphone
face side by side, 25 fps, cached in ``~/.cache/stylefusion-bench``) is watched with
``stylefusion.live.watch(..., realtime=True)``: the file is read at its own pace, as a live stream
arrives, and windows are skipped when the networks fall behind (``max_lag_s`` = one window). Per
case, from that one run:

- real-time factor: seconds the worker spent judging windows per second of stream (below 1: it
  keeps up; the judged windows' processing over the stream's length, so skipped windows lower it);
- per-window processing, median (seconds) and per-window factor (median processing / window);
- latency p50 / p95: wall time from a window's last frame arriving to its answer;
- skipped: the share of windows not analysed because the networks were behind.

The default run uses the tiny test checkpoint (the front end, MTCNN on every window's frames,
dominates) and takes about 2 minutes; ``--full`` adds a random checkpoint of the full preset (what
``stylefusion init`` writes; the report's network sizes), which is what decides how many people a
machine can watch. The CPU, its flags and the threads are printed first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import CACHE_DIR, make_checkpoint, median, people_video, rss_mb, set_threads, table  # noqa: E402


def run_case(det, video: Path, window_s: float) -> dict:
    from stylefusion.live import watch

    processing = []
    t0 = time.perf_counter()
    summary = None
    for r in watch(det, str(video), window_s=window_s, max_lag_s=window_s, realtime=True):
        if r.kind == "ended":
            summary = r.summary
        elif r.processing_s is not None and r.kind != "skipped":
            processing.append((r.window, r.processing_s))
    wall = time.perf_counter() - t0
    per_window = [p for _, p in dict(processing).items()]
    total = summary.windows_judged + summary.windows_skipped
    return {"wall_s": wall, "stream_s": summary.stream_s, "rtf": summary.realtime_factor or float("nan"),
            "window_median_s": median(per_window), "p50": summary.latency_p50, "p95": summary.latency_p95,
            "skipped": summary.windows_skipped / total if total else float("nan"), "windows": total,
            "people": summary.people}


def long_stream(det, video: Path, seconds: float, window_s: float, every_s: float = 600.0) -> list[list]:
    """``seconds`` of stream (the video looped, 25 fps) pushed into one LiveSession that judges every
    window (``realtime=False``: the memory of a session that never skips); the process's resident
    memory and what the session holds, every ``every_s`` seconds of stream."""
    import av

    from stylefusion.live import LiveSession

    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    fps = 25
    session = LiveSession(det, window_s=window_s, realtime=False, keep_crops=False)
    rows, records, t0 = [], 0, time.perf_counter()
    for i in range(int(seconds * fps) + 1):
        t = i / fps
        session.push(frames[i % len(frames)] if session.wants(t) else None, t)
        if i % (fps * 10) == 0:
            records += len(session.poll())
        if i % int(fps * every_s) == 0:
            st = session.stats()
            rows.append([f"{t / 60:.0f} min", f"{rss_mb():.0f}", st["buffered_frames"], st["queued_windows"],
                         records, f"{time.perf_counter() - t0:.0f}"])
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    summary = session.close("stream ended")
    rows.append(["end", f"{rss_mb():.0f}", 0, 0, records + len(session.poll()), f"{time.perf_counter() - t0:.0f}"])
    print(f"# {summary.line()}")
    return rows


def warm_up(det) -> None:
    """Build what the first call builds (oneDNN primitives, Winograd filters, MTCNN) before timing."""
    import numpy as np

    c = det.config
    crops = np.zeros((c.clip_len * c.num_clips, c.face_size, c.face_size, 3), np.uint8)
    det.style_features(crops[:4])
    det.content_features(crops)
    det.cropper.detect(np.zeros((1, 120, 160, 3), np.uint8))
    det.identity()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", default="1,2,4")
    p.add_argument("--seconds", type=float, default=20.0, help="stream length per case (default 20)")
    p.add_argument("--window", type=float, default=4.0, help="window seconds (default 4)")
    p.add_argument("--full", action="store_true", help="also a random checkpoint of the full preset")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None, help="torch device (default cpu; cuda where a GPU is lent)")
    p.add_argument("--long", type=float, default=None, metavar="SECONDS",
                   help="instead: memory over a stream this long (e.g. 3600: an hour), 2 people, the tiny "
                        "checkpoint, every window judged; resident memory every 10 minutes of stream")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)

    import torch

    from stylefusion.detector import StyleFusionDetector, init_checkpoint
    from stylefusion.precision import describe_cpu

    print(f"# {describe_cpu()}")
    print(f"# {os.cpu_count()} cores, {threads} torch threads, load average {os.getloadavg()[0]:.2f}"
          + (f", GPU {torch.cuda.get_device_name(0)}" if args.device and args.device.startswith("cuda") else ""))
    people = [int(x) for x in args.people.split(",")]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if args.long:
        with tempfile.TemporaryDirectory() as tmp:
            init_checkpoint("tiny", Path(tmp) / "tiny", seed=0)
            det = StyleFusionDetector.from_pretrained(Path(tmp) / "tiny", precision=args.precision, device=args.device)
            warm_up(det)
            rows = long_stream(det, people_video(CACHE_DIR / "people2_20s.mp4", 2, 20.0), args.long, args.window)
        print(f"# {args.long:g} s of stream (a 20 s video of 2 people looped), windows of {args.window:g} s, "
              "every window judged")
        print(table(rows, ["stream", "RSS MB", "frames held", "windows queued", "records", "wall s"]))
        return 0
    checkpoints = []
    with tempfile.TemporaryDirectory() as tmp:
        init_checkpoint("tiny", Path(tmp) / "tiny", seed=0)
        checkpoints.append(("tiny", Path(tmp) / "tiny"))
        if args.full:
            checkpoints.append(("full", make_checkpoint(CACHE_DIR / "ckpt-full")))
        rows = []
        for name, ckpt in checkpoints:
            det = StyleFusionDetector.from_pretrained(ckpt, precision=args.precision, device=args.device)
            warm_up(det)
            for n in people:
                video = people_video(CACHE_DIR / f"people{n}_{args.seconds:g}s.mp4", n, args.seconds)
                r = run_case(det, video, args.window)
                rows.append([name, det.precision, n, r["windows"], r["rtf"], r["window_median_s"],
                             r["window_median_s"] / args.window, r["p50"] or float("nan"),
                             r["p95"] or float("nan"), r["skipped"], r["people"]])
                print(f"  {name} {n} people: {r}", file=sys.stderr, flush=True)
    print(f"# windows of {args.window:g} s, streams of {args.seconds:g} s read at real-time pace, max lag = one window")
    print(table(rows, ["checkpoint", "precision", "people", "windows", "RTF", "window s (median)",
                       "window RTF", "latency p50", "latency p95", "skipped", "ids"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
