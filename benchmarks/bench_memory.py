"""Peak memory (RSS) of ``read_frames`` and of ``detect`` on 10-second, 1-minute and 10-minute 720p videos.

    python benchmarks/bench_memory.py [--repeats 3] [--quick] [--preset tiny|full]
    python benchmarks/bench_memory.py --raw [--repeats 3]
    python benchmarks/bench_memory.py --windows [--repeats 3]

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

``--raw`` measures instead the sequential fallback of ``read_frames`` (no seeking) on raw H.264
elementary streams (``.264``: no container, no timestamps, as cameras write them) of 10 seconds
(250 frames) and 10 minutes (15,000 frames): 320x240, 25 fps, the carphone face moving over a
textured background, x264 ultrafast crf 28, GOP 250, encoded straight into the raw stream (the
generation time is printed). Budget (issue 13): the 10-minute peak within 100 MB of the 10-second
one. The children load no networks (only ``stylefusion.video``), and each reports which decode
path it took, so the figure is known to be the sequential pass.

``--windows`` measures ``VideoReader.iter_read`` (issue 14: a video analysed as stretches of
``window_s``): the scan, ``windows(15, max_windows=8)`` and T=32 frames in each analysed window, on
the 10-second, 1-minute and 10-minute 720p videos above (1, 4 and 40 windows; 1, 4 and 8 analysed)
and on the two raw H.264 streams of ``--raw`` (one sequential pass for all windows). The child
drops each window's frames before asking for the next (a consumer that keeps them adds one
window: 32 x 1280 x 720 x 3 = 88 MB), loads only ``stylefusion.video``, and counts its decode
passes. Budget: the 10-minute peak within 100 MB of the 10-second one (issue 2's budget for
``read_frames``), for each kind of file.
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

from _common import CACHE_DIR, composite_video, looped_video, median, table  # noqa: E402

LENGTHS = {"10s": None, "1min": None, "10min": None}
BUDGET_MB = {"read_frames": 100.0, "detect": 150.0, "raw read_frames": 100.0, "windows": 100.0}
WINDOW_S = 15.0
MAX_WINDOWS = 8
RAW_SIZE = (320, 240)
RAW_FPS = 25
RAW_SECONDS = {"10s": 10, "10min": 600}


def raw_stream(path: Path, seconds: int) -> Path:
    """A raw H.264 stream (Annex B, no container) of ``seconds`` at 320x240, reused if present."""
    import av
    import numpy as np

    from videogen import carphone_path, encode_frames

    path = Path(path)
    if path.is_file():
        return path
    with av.open(str(carphone_path())) as src:
        faces = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    width, height = RAW_SIZE
    background = np.random.default_rng(0).integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    fh, fw = faces[0].shape[:2]

    def frames():
        for i in range(seconds * RAW_FPS):
            img = background.copy()
            x = int((width - fw) * (0.5 + 0.5 * np.sin(i / 50)))
            y = (height - fh) // 2
            img[y:y + fh, x:x + fw] = faces[i % len(faces)]
            yield img

    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    encode_frames(tmp, frames(), width=width, height=height, fps=RAW_FPS, container_format="h264",
                  options={"crf": "28", "preset": "ultrafast", "g": "250"})
    os.replace(tmp, path)
    return path


def _count_decode_passes(sv) -> list[str]:
    """Wrap the video module's two decode paths; the returned list names each pass as it starts."""
    passes: list[str] = []
    for name in ("_decode_sequential", "_decode_targets"):
        real = getattr(sv, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            passes.append(_name.removeprefix("_decode_"))
            return _real(*args, **kwargs)

        setattr(sv, name, spy)
    return passes


def raw_child(video: str) -> None:
    """Fresh process for ``--raw``: only the video reader is loaded; one ``read_frames`` call."""
    from _common import peak_rss_mb, rss_mb

    import stylefusion.video as sv

    passes = _count_decode_passes(sv)
    before = rss_mb()
    t0 = time.perf_counter()
    frames = sv.read_frames(video, 32)
    seconds = time.perf_counter() - t0
    print(json.dumps({"before": before, "peak": peak_rss_mb(), "seconds": seconds,
                      "frames": int(frames.info.num_frames), "pass": "+".join(passes)}))


def run_raw(args: argparse.Namespace) -> int:
    """The ``--raw`` benchmark: sequential-pass memory on 10-second and 10-minute raw streams."""
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    videos = {}
    for length, seconds in RAW_SECONDS.items():
        path = cache / f"raw-{RAW_SIZE[0]}x{RAW_SIZE[1]}-{seconds}s.264"
        t0 = time.perf_counter()
        cached = path.is_file()
        videos[length] = raw_stream(path, seconds)
        print(f"# {length} raw stream ({seconds * RAW_FPS} frames, {path.stat().st_size / 1e6:.1f} MB): "
              + ("cached" if cached else f"generated in {time.perf_counter() - t0:.1f}s"), flush=True)
    print(f"# read_frames(32) on raw H.264 ({RAW_SIZE[0]}x{RAW_SIZE[1]}), {args.repeats} fresh processes per "
          f"figure; peak = VmHWM, before = VmRSS after imports (MB = 10^6 bytes)", flush=True)
    results: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for length, video in videos.items():
            cmd = [sys.executable, __file__, "--raw-child", str(video)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"child failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
            results.setdefault(length, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    base_peak = median(x["peak"] for x in results["10s"])
    base_delta = median(x["peak"] - x["before"] for x in results["10s"])
    rows = []
    for length, xs in results.items():
        peak = median(x["peak"] for x in xs)
        delta = median(x["peak"] - x["before"] for x in xs)
        rows.append([length, xs[0]["frames"], "/".join(sorted({x["pass"] for x in xs})),
                     median(x["before"] for x in xs), peak, delta, peak - base_peak, delta - base_delta,
                     median(x["seconds"] for x in xs)])
    print("\n## raw read_frames")
    print(table(rows, ["video", "frames", "pass", "before MB", "peak MB", "peak-before MB", "peak vs 10s MB",
                       "(peak-before) vs 10s", "seconds"]))
    diff = rows[-1][6]
    within = diff <= BUDGET_MB["raw read_frames"]
    print(f"10-minute vs 10-second peak: {diff:+.1f} MB (budget {BUDGET_MB['raw read_frames']:.0f} MB): "
          f"{'within' if within else 'OVER'}")
    return 0 if within else 1


def windows_child(video: str) -> None:
    """Fresh process for ``--windows``: only the video reader is loaded; one ``iter_read`` over the
    analysed windows, each window's frames dropped before the next is read."""
    from _common import peak_rss_mb, rss_mb

    import stylefusion.video as sv

    passes = _count_decode_passes(sv)
    before = rss_mb()
    t0 = time.perf_counter()
    with sv.VideoReader(video) as reader:
        windows = reader.windows(WINDOW_S, MAX_WINDOWS)
        read = 0
        for _, frames in reader.iter_read(windows, 32):
            read += len(frames.images)
            del frames
        num_frames = reader.num_source
    seconds = time.perf_counter() - t0
    kinds = sorted(set(passes))
    print(json.dumps({"before": before, "peak": peak_rss_mb(), "seconds": seconds, "frames": num_frames,
                      "windows": len(windows), "analysed": sum(w.analysed for w in windows), "read": read,
                      "pass": "+".join(f"{k} x{passes.count(k)}" for k in kinds)}))


def run_windows(args: argparse.Namespace) -> int:
    """The ``--windows`` benchmark: iter_read memory on 720p mp4s and raw streams, 10 s to 10 min."""
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    groups = {"720p mp4": {"10s": composite_video(cache / "composite-720p-10s.mp4", 10),
                           "1min": composite_video(cache / "composite-720p-60s.mp4", 60)}}
    groups["720p mp4"]["10min"] = looped_video(groups["720p mp4"]["1min"], cache / "composite-720p-600s.mp4", 10)
    groups[f"raw H.264 {RAW_SIZE[0]}x{RAW_SIZE[1]}"] = {
        length: raw_stream(cache / f"raw-{RAW_SIZE[0]}x{RAW_SIZE[1]}-{seconds}s.264", seconds)
        for length, seconds in RAW_SECONDS.items()}
    print(f"# videos ready in {time.perf_counter() - t0:.0f}s", flush=True)
    print(f"# VideoReader.iter_read: windows({WINDOW_S:g} s, max_windows={MAX_WINDOWS}), T=32 per window; "
          f"{args.repeats} fresh processes per figure; peak = VmHWM, before = VmRSS after imports "
          "(MB = 10^6 bytes)", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):
        for group, videos in groups.items():
            for length, video in videos.items():
                cmd = [sys.executable, __file__, "--windows-child", str(video)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"child failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
                results.setdefault((group, length), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    ok = True
    for group, videos in groups.items():
        base = results[(group, next(iter(videos)))]
        base_peak = median(x["peak"] for x in base)
        base_delta = median(x["peak"] - x["before"] for x in base)
        rows = []
        for length in videos:
            xs = results[(group, length)]
            peak = median(x["peak"] for x in xs)
            delta = median(x["peak"] - x["before"] for x in xs)
            rows.append([length, xs[0]["frames"], f"{xs[0]['analysed']}/{xs[0]['windows']}", xs[0]["read"],
                         "/".join(sorted({x["pass"] for x in xs})), median(x["before"] for x in xs), peak, delta,
                         peak - base_peak, delta - base_delta, median(x["seconds"] for x in xs)])
        print(f"\n## iter_read, {group}")
        print(table(rows, ["video", "frames", "analysed/windows", "frames read", "decode calls", "before MB",
                           "peak MB", "peak-before MB", "peak vs 10s MB", "(peak-before) vs 10s", "seconds"]))
        diff = rows[-1][8]
        within = diff <= BUDGET_MB["windows"]
        ok &= within
        print(f"10-minute vs 10-second peak: {diff:+.1f} MB (budget {BUDGET_MB['windows']:.0f} MB): "
              f"{'within' if within else 'OVER'}")
    return 0 if ok else 1


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
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--raw-child":
        raw_child(sys.argv[2])
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--windows-child":
        windows_child(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat per measurement")
    ap.add_argument("--preset", default="tiny", choices=("tiny", "full"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(CACHE_DIR), help="where the generated videos are kept")
    ap.add_argument("--raw", action="store_true",
                    help="only the sequential fallback on raw H.264 streams (10 s vs 10 min, 320x240)")
    ap.add_argument("--windows", action="store_true",
                    help=f"only VideoReader.iter_read (window_s={WINDOW_S:g}, max_windows={MAX_WINDOWS}) on "
                         "10 s, 1 min and 10 min videos (720p mp4 and raw H.264)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.windows:
        t0 = time.perf_counter()
        rc = run_windows(args)
        print(f"\nwall time {time.perf_counter() - t0:.0f}s")
        return rc
    if args.raw:
        t0 = time.perf_counter()
        rc = run_raw(args)
        print(f"\nwall time {time.perf_counter() - t0:.0f}s")
        return rc
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
