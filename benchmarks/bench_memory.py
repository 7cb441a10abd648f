"""Peak memory (RSS) of ``read_frames`` and of ``detect`` on 10-second, 1-minute and 10-minute 720p videos.

    python benchmarks/bench_memory.py [--repeats 3] [--quick] [--preset tiny|full]

Videos (1280x720 H.264, the carphone face moving over a background; tests/videogen.py, crf 28,
x264 ultrafast) are generated once into ``~/.cache/stylefusion-bench`` (or
``$STYLEFUSION_BENCH_CACHE``): the 1-minute video is encoded, the 10-minute one is ten copies of
it remuxed back to back (same codec, resolution and GOP structure; seconds instead of minutes).

Each measurement runs in a fresh Python process, which imports everything and loads the model
first, then records VmRSS (``before``), calls ``read_frames`` or ``detect`` once, and reports
VmHWM (the process's peak RSS, /proc/self/status). ``peak`` and ``peak - before`` are printed as
medians of ``--repeats`` processes, with the differences to the 10-second video, against the
budgets: issue 2, read_frames on 10 minutes within 100 MB of 10 seconds; issue 7, detect on
10 minutes within 150 MB of 10 seconds. The networks are the ``tiny`` preset by default (the
pipeline's frame and crop buffers are the same; ``--preset full`` adds the full weights).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR, composite_video, looped_video, median, table  # noqa: E402

LENGTHS = {"10s": None, "1min": None, "10min": None}
BUDGET_MB = {"read_frames": 100.0, "detect": 150.0}


def child(mode: str, video: str, ckpt: str, threads: int) -> None:
    """Runs in the fresh process: load, measure one call, print one JSON line."""
    import torch

    torch.set_num_threads(threads)
    from _common import peak_rss_mb, rss_mb

    from stylefusion.detector import StyleFusionDetector
    from stylefusion.video import read_frames

    det = StyleFusionDetector.from_pretrained(ckpt).eval()
    _ = det.cropper  # MTCNN built before the baseline
    before = rss_mb()
    t0 = time.perf_counter()
    if mode == "read_frames":
        frames = read_frames(video, det.config.num_frames)
        info = {"frames": int(frames.info.num_frames)}
    else:
        res = det.detect(video)
        info = {"frames": int(res.video.get("num_frames", 0)), "face_found_ratio": res.face_found_ratio}
    seconds = time.perf_counter() - t0
    print(json.dumps({"before": before, "peak": peak_rss_mb(), "seconds": seconds, **info}))


def measure(mode: str, video: Path, ckpt: Path, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(video), str(ckpt), str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat per measurement")
    ap.add_argument("--preset", default="tiny", choices=("tiny", "full"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(CACHE_DIR), help="where the generated videos are kept")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 1
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    videos = {
        "10s": composite_video(cache / "composite-720p-10s.mp4", 10),
        "1min": composite_video(cache / "composite-720p-60s.mp4", 60),
    }
    videos["10min"] = looped_video(videos["1min"], cache / "composite-720p-600s.mp4", 10)
    print(f"# videos ready in {time.perf_counter() - t0:.0f}s: "
          + ", ".join(f"{k} {v.stat().st_size / 1e6:.1f} MB" for k, v in videos.items()), flush=True)
    from _common import make_checkpoint

    tmp = tempfile.TemporaryDirectory(prefix="sf-bench-mem-")
    ckpt = make_checkpoint(Path(tmp.name) / f"{args.preset}-ckpt", args.preset)
    print(f"# preset {args.preset} networks, {args.threads} threads, {args.repeats} fresh processes per "
          f"figure; peak = VmHWM of the process, before = VmRSS after loading (MB = 10^6 bytes)", flush=True)

    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.repeats):  # interleaved, so a noisy spell hits every figure alike
        for mode in ("read_frames", "detect"):
            for length, video in videos.items():
                results.setdefault((mode, length), []).append(measure(mode, video, ckpt, args.threads))
    ok = True
    for mode in ("read_frames", "detect"):
        rows = []
        base_peak = median(x["peak"] for x in results[(mode, "10s")])
        base_delta = median(x["peak"] - x["before"] for x in results[(mode, "10s")])
        for length in videos:
            xs = results[(mode, length)]
            peak = median(x["peak"] for x in xs)
            delta = median(x["peak"] - x["before"] for x in xs)
            rows.append([length, xs[0]["frames"], median(x["before"] for x in xs), peak, delta,
                         peak - base_peak, delta - base_delta, median(x["seconds"] for x in xs)])
        print(f"\n## {mode}")
        print(table(rows, ["video", "frames", "before MB", "peak MB", "peak-before MB",
                           "peak vs 10s MB", "(peak-before) vs 10s", "seconds"]))
        diff = rows[-1][5]
        within = diff <= BUDGET_MB[mode]
        ok &= within
        print(f"10-minute vs 10-second peak: {diff:+.1f} MB (budget {BUDGET_MB[mode]:.0f} MB): "
              f"{'within' if within else 'OVER'}")
    print(f"\nwall time {time.perf_counter() - t0:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
