"""P people x W windows: per-crop time of the extractors and peak RSS of ``detect``, fresh process per case.

    python benchmarks/bench_people.py [--preset full|tiny] [--people 1,2,4] [--windows 1,4,8]
                                      [--precision auto] [--repeats 1] [--window-s 2]

Videos (``_common.people_video``: tests/videogen.py's writer, cached in ``~/.cache/stylefusion-bench``
or ``$STYLEFUSION_BENCH_CACHE``): P copies of the carphone face (2x bicubic upscale, 352x288 each)
side by side over a textured background, each copy a different moment of the clip (30 frames
apart) so the P people do not move in lockstep; W windows = a video of W x ``window_s`` seconds
at 25 fps, with ``window_s`` (default 2 s) set in the random checkpoint's config. ``detect(path,
max_windows=W, max_people=P)`` then judges P x W segments of T=32 crops each, all of which go
through each extractor together.

Each case runs in a fresh Python process (as ``bench_memory.py`` does), which imports everything,
loads the model and MTCNN and warms both extractors up on one batch (so the fp32 path's Winograd
filters are built before the figure), records VmRSS ("before"), runs ``detect`` once and reports
VmHWM ("peak"), the stage timings and the segment count. Per-crop time = (style + content seconds)
/ (segments x T). Printed per case, and against the 1-segment case: the per-crop ratio (goal: flat
within +-15% from 1 to 32 segments) and the peak ratio (goal: 4 people x 8 windows within 1.5x of
one segment's peak).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CACHE_DIR, median, peak_rss_mb, people_video, rss_mb, table  # noqa: E402


def child(ckpt: str, video: str, people: int, windows: int, precision: str, threads: int) -> dict:
    """One measurement, in this (fresh) process."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from stylefusion.detector import StyleFusionDetector

    det = StyleFusionDetector.from_pretrained(ckpt, precision=precision)
    c = det.config
    crops = np.zeros((c.clip_len * c.num_clips, c.face_size, c.face_size, 3), np.uint8)
    det.style_features(crops[:4])  # warm-up: Winograd filters (fp32), oneDNN primitives
    det.content_features(crops)
    det.cropper.mtcnn.detect(np.zeros((1, 120, 160, 3), np.uint8))
    before = rss_mb()
    t0 = time.perf_counter()
    res = det.detect(video, max_windows=windows, max_people=people)
    wall = time.perf_counter() - t0
    segments = sum(1 for p in res.people for s in p.segments if s.judged)
    return {"before_mb": before, "peak_mb": peak_rss_mb(), "wall_s": wall, "segments": segments,
            "crops": segments * c.num_frames, "timings": dict(res.timings), "precision": det.precision,
            "windows_analysed": sum(1 for t in res.timeline if t.analysed), "people": len(res.people)}


def run_child(script: Path, ckpt: Path, video: Path, people: int, windows: int, precision: str,
              threads: int) -> dict:
    cmd = [sys.executable, str(script), "--child", str(ckpt), str(video), str(people), str(windows), precision,
           str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=script.parent)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        ckpt, video, people, windows, precision, threads = argv[1:7]
        print(json.dumps(child(ckpt, video, int(people), int(windows), precision, int(threads))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="full", choices=["full", "tiny"])
    ap.add_argument("--people", default="1,2,4")
    ap.add_argument("--windows", default="1,4,8")
    ap.add_argument("--cases", default=None,
                    help="explicit PxW list instead of the grid, e.g. 1x1,4x8 (first = the baseline)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=1, help="fresh processes per case (medians)")
    ap.add_argument("--window-s", type=float, default=2.0, help="window_s of the checkpoint's config")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    args = ap.parse_args(argv)
    threads = args.threads or max(1, min(2, os.cpu_count() or 1))

    from stylefusion.precision import describe_cpu

    t_start = time.perf_counter()
    if args.cases:
        cases = [tuple(int(v) for v in c.split("x")) for c in args.cases.split(",")]
    else:
        cases = [(p, w) for p in map(int, args.people.split(",")) for w in map(int, args.windows.split(","))]
        cases.sort(key=lambda pw: (pw[0] * pw[1], pw))
    tmp = tempfile.TemporaryDirectory(prefix="sf-bench-people-")
    ckpt = Path(tmp.name) / f"{args.preset}-w{args.window_s:g}"
    from stylefusion.detector import init_checkpoint

    init_checkpoint(args.preset, ckpt, seed=0, window_s=args.window_s)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    videos = {}
    for p, w in cases:
        videos[(p, w)] = people_video(CACHE_DIR / f"people-{p}p-{w * args.window_s:g}s.mp4", p, w * args.window_s)
    print(f"# bench_people: preset {args.preset}, precision {args.precision}, {threads} threads, window_s "
          f"{args.window_s:g}, repeats {args.repeats}; setup {time.perf_counter() - t_start:.0f}s")
    print(f"# {describe_cpu()}", flush=True)

    script = Path(__file__).resolve()
    results = {}
    for p, w in cases:
        runs = [run_child(script, ckpt, videos[(p, w)], p, w, args.precision, threads) for _ in range(args.repeats)]
        r = {
            "segments": runs[0]["segments"], "crops": runs[0]["crops"], "precision": runs[0]["precision"],
            "windows_analysed": runs[0]["windows_analysed"],
            "style_s": median(x["timings"]["style"] for x in runs),
            "content_s": median(x["timings"]["content"] for x in runs),
            "faces_s": median(x["timings"].get("faces", 0.0) for x in runs),
            "total_s": median(x["timings"]["total"] for x in runs),
            "before_mb": median(x["before_mb"] for x in runs), "peak_mb": median(x["peak_mb"] for x in runs),
        }
        r["per_crop_s"] = (r["style_s"] + r["content_s"]) / max(1, r["crops"])
        results[(p, w)] = r
        print(f"  {p} people x {w} windows: {r['segments']} segments ({r['windows_analysed']} windows analysed), "
              f"{r['per_crop_s']:.3f} s/crop (style {r['style_s']:.1f} s, content {r['content_s']:.1f} s, faces "
              f"{r['faces_s']:.1f} s), peak {r['peak_mb']:.0f} MB ({time.perf_counter() - t_start:.0f}s; load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)

    base = results[cases[0]]
    rows = []
    for (p, w), r in results.items():
        rows.append([f"{p} x {w}", r["segments"], r["crops"], r["style_s"] / max(1, r["crops"]),
                     r["content_s"] / max(1, r["crops"]), r["per_crop_s"], r["per_crop_s"] / base["per_crop_s"],
                     r["faces_s"], r["total_s"], r["before_mb"], r["peak_mb"], r["peak_mb"] / base["peak_mb"]])
    print(f"\n## P people x W windows, preset {args.preset}, precision {base['precision']} "
          f"(ratios against {cases[0][0]} x {cases[0][1]})")
    print(table(rows, ["P x W", "segments", "crops", "style s/crop", "content s/crop", "extractors s/crop",
                       "vs base", "faces s", "detect s", "before MB", "peak MB", "peak vs base"]))
    per_crop = [r["per_crop_s"] / base["per_crop_s"] for r in results.values()]
    print(f"per-crop time across cases: {min(per_crop):.2f}x to {max(per_crop):.2f}x of the base "
          f"(goal: within 0.85-1.15x): {'met' if 0.85 <= min(per_crop) and max(per_crop) <= 1.15 else 'NOT met'}")
    big = results.get((4, 8))
    if big is not None:
        ratio = big["peak_mb"] / base["peak_mb"]
        print(f"peak RSS 4 x 8 ({big['segments']} segments): {big['peak_mb']:.0f} MB = {ratio:.2f}x of the base's "
              f"{base['peak_mb']:.0f} MB (goal <= 1.5x): {'met' if ratio <= 1.5 else 'NOT met'}")
    print(f"# {describe_cpu()}")
    print(f"wall time {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
