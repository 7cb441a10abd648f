"""GPU extraction figures with the FULL preset: per-video time by precision (10-second and 3-minute
videos, one and several people), videos/s, peak memory.

    python benchmarks/bench_gpu.py [--device cuda] [--repeats 5] [--batches 1,8,32] [--precisions fp32,bf16]
                                   [--long-s 180] [--people 4] [--max-windows N] [--max-people N] [--quick]

Inputs, made in a temp dir: a random full-size checkpoint, a 1280x720 10-second composite face
video, the same looped to ``--long-s`` seconds (3 minutes: 12 windows of 15 s; packets remuxed, no
re-encoding), a 10-second video of ``--people`` faces side by side (1568x352 for 4) and the same
looped, and the carphone clip (tests/videogen.py, benchmarks/_common.py). For each precision of
``--precisions`` (``fp32``, ``bf16`` or ``auto``, set with ``det.set_precision``; ``--precision``
is the same option):

  * per video: ``detect(path, max_windows=..., max_people=...)`` on each of the four videos (every
    window and person the detector's defaults analyse: 32 windows at most on a GPU, 8 on a CPU, 4
    people per window), median time per stage over ``--repeats`` after warm-ups, with the windows
    analysed, the segments judged, the extractors' time per crop and the peak GPU memory;
  * throughput: N videos (the 720p composite and carphone alternating) one after the other with
    ``detect`` ("sequential"), and the same N with :func:`extract_many` ("batched": frames decoded
    by a thread pool, faces per video, then every crop of the N videos through the style encoder
    and every clip through the content network in large batches, and one head call), in videos/s;
  * peak GPU memory (``torch.cuda.max_memory_allocated``) of each.
The batched features are checked against the per-video ones. Also runs on the CPU (``--device cpu
--quick --preset tiny``) to check the script itself: ``--quick`` = 1 repeat, batches 1,2, a
4-second video looped to 16 s (2 windows), 2 people, no warm-up per video.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (  # noqa: E402
    composite_video, looped_video, make_checkpoint, median, people_video, set_threads, table,
)

import torch  # noqa: E402

STAGES = ("sampling", "faces", "style", "content", "head")


def extract_many(det, paths, style_batch: int = 128, workers: int = 4):
    """Features and logits of several videos with the networks batched ACROSS videos.

    Returns (content [N, C, Dc], style [N, T, L, Ds], logits [N], timings). Same preprocessing and
    weights as ``detect``; only the batching differs.
    """
    t = {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:  # PyAV decoding releases the GIL
        analyses = list(pool.map(lambda p: det.people(p, max_windows=1, max_people=1), paths))
    t1 = time.perf_counter()
    tracks = [a.crops[0] for a in analyses]  # the front end: scan, people, the judged span's crops
    t2 = time.perf_counter()
    import numpy as np

    crops = np.concatenate([tr.crops for tr in tracks])  # [N*T, S, S, 3]
    old = det.style_batch_size
    det.style_batch_size = style_batch
    try:
        style = det.style_features(crops)
    finally:
        det.style_batch_size = old
    if det.device.type == "cuda":
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    c = det.config
    n = len(paths)
    content = _content_batched(det, crops, n)
    t4 = time.perf_counter()
    style = style.view(n, c.num_frames, *style.shape[1:])
    content = content.view(n, c.num_clips, -1)
    out = det.classify(content, style)
    logits = out.logits.float().cpu()
    t5 = time.perf_counter()
    t.update(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))
    return content, style, logits, t


def _content_batched(det, crops, n):
    """All clips of ``n`` videos through the content network in one pass (as content_features)."""
    from stylefusion.transforms import content_frames

    c = det.config
    with torch.inference_mode(), det._autocast():
        x = content_frames(crops, c, det.device)
        x = x.view(n * c.num_clips, c.clip_len, 3, c.content_size, c.content_size).transpose(1, 2)
        return det.content(x).float().cpu()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--precisions", "--precision", dest="precisions", default="fp32,bf16",
                    help="comma-separated: fp32, bf16, auto")
    ap.add_argument("--long-s", type=float, default=180.0, help="length of the long videos (seconds)")
    ap.add_argument("--people", type=int, default=4, help="faces in the people videos")
    ap.add_argument("--max-windows", type=int, default=None, help="detect(max_windows=...); default: the detector's")
    ap.add_argument("--max-people", type=int, default=None, help="detect(max_people=...); default: the detector's")
    ap.add_argument("--quick", action="store_true",
                    help="1 repeat, batches 1,2, a 4-second video looped to 16 s, 2 people, fewer warm-ups")
    ap.add_argument("--preset", default="full", choices=("full", "tiny"),
                    help="tiny only to check the script on a CPU")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    seconds = 10.0
    if args.quick:
        args.repeats, args.batches, seconds, args.long_s, args.people = 1, "1,2", 4.0, 16.0, 2
    precisions = args.precisions.split(",")
    for prec in precisions:
        if prec not in ("fp32", "bf16", "auto"):
            raise SystemExit(f"--precisions: {prec!r} is not fp32, bf16 or auto")
    set_threads(None)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch")
    if cuda:
        torch.backends.cudnn.benchmark = True
    from videogen import carphone_path

    from stylefusion.detector import StyleFusionDetector
    from stylefusion.precision import describe_cpu

    tmp = tempfile.TemporaryDirectory(prefix="sf-bench-gpu-")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ckpt = make_checkpoint(work / f"{args.preset}-ckpt", args.preset)
    v720 = composite_video(work / f"composite-{seconds:g}s.mp4", seconds)
    copies = max(1, round(args.long_s / seconds))
    vp = people_video(work / f"people-{args.people}p-{seconds:g}s.mp4", args.people, seconds)
    per_video = [
        (f"{seconds:g} s 720p, 1 person", v720),
        (f"{copies * seconds:g} s 720p, 1 person", looped_video(v720, work / f"composite-x{copies}.mp4", copies)),
        (f"{seconds:g} s, {args.people} people", vp),
        (f"{copies * seconds:g} s, {args.people} people", looped_video(vp, work / f"people-x{copies}.mp4", copies)),
    ]
    videos = [v720, carphone_path()]
    det = StyleFusionDetector.from_pretrained(ckpt, device=device).eval()
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"# bench_gpu: {name}, torch {torch.__version__}, preset {det.config.preset}, "
          f"repeats {args.repeats}, window_s {det.config.window_s:g}; setup {time.perf_counter() - t_start:.0f}s")
    print(f"# {describe_cpu()}", flush=True)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    detect_kw = dict(max_windows=args.max_windows, max_people=args.max_people)

    def reset_peak():
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats(device)

    def peak_mb():
        return torch.cuda.max_memory_allocated(device) / 1e6 if cuda else float("nan")

    per_video_rows, thr_rows = [], []
    totals: dict[tuple[str, str], float] = {}
    ref_feats = {}
    for prec in precisions:
        det.set_precision(prec)
        used = det.precision  # what "auto" resolved to on this device
        label = used if prec == used else f"{prec}->{used}"
        for _ in range(2 if not args.quick else 1):
            det.detect(v720)  # warm-up (cuDNN autotune, MTCNN on the device)
        for vname, path in per_video:
            if not args.quick:
                det.detect(path, **detect_kw)  # warm-up for this video's batch shapes (cuDNN autotune)
            reset_peak()
            runs = []
            for _ in range(args.repeats):
                sync()
                t0 = time.perf_counter()
                res = det.detect(path, **detect_kw)
                sync()
                runs.append((time.perf_counter() - t0, res))
            res = runs[-1][1]
            segments = sum(1 for person in res.people for seg in person.segments if seg.judged)
            crops = segments * det.config.num_frames
            stage = {s: median(r.timings.get(s, 0.0) for _, r in runs) for s in STAGES}
            total = median(w for w, _ in runs)
            totals[(label, vname)] = total
            per_video_rows.append([label, vname, sum(1 for t in res.timeline if t.analysed), segments, total,
                                   *(stage[s] for s in STAGES),
                                   (stage["style"] + stage["content"]) / max(1, crops), peak_mb()])
            print(f"  {label} {vname}: {total:.3f}s per video ({segments} segments)", flush=True)
        feats = [det.extract_features(v) for v in videos]
        ref_feats[used] = feats
        for n in (int(b) for b in args.batches.split(",")):
            paths = [videos[i % len(videos)] for i in range(n)]
            reset_peak()
            sync()
            t0 = time.perf_counter()
            for p in paths:
                det.detect(p)
            sync()
            seq = time.perf_counter() - t0
            seq_peak = peak_mb()
            reset_peak()
            sync()
            t0 = time.perf_counter()
            content, style, _, bt = extract_many(det, paths)
            sync()
            bat = time.perf_counter() - t0
            bat_peak = peak_mb()
            # batched features = per-video features (bf16: loose tolerance)
            tol = 1e-3 if used == "fp32" else 5e-2
            for i in range(min(n, len(videos))):
                f = feats[i]
                for got, want in ((style[i].cpu(), f.style), (content[i].cpu(), f.content)):
                    scale = float(want.abs().max()) or 1.0
                    err = float((got - want).abs().max()) / scale
                    if err > tol:
                        raise SystemExit(f"{label} batch {n}: batched features differ from per-video ones "
                                         f"(max rel err {err:.2e} > {tol})")
            thr_rows.append([label, n, seq, n / seq, seq_peak, bat, n / bat, bat_peak,
                             *(bt[s] for s in STAGES)])
            print(f"  {label} N={n}: sequential {n / seq:.2f} videos/s, batched {n / bat:.2f} videos/s",
                  flush=True)
    if "fp32" in ref_feats and "bf16" in ref_feats:
        a, b = ref_feats["fp32"][0], ref_feats["bf16"][0]
        rel = float((a.style - b.style).abs().max() / a.style.abs().max())
        relc = float((a.content - b.content).abs().max() / a.content.abs().max())
        cos = float(torch.nn.functional.cosine_similarity(a.style.flatten(1), b.style.flatten(1)).min())
        print(f"# bf16 vs fp32 on the 720p video: style max rel diff {rel:.2e} (min cosine {cos:.6f}), "
              f"content {relc:.2e}")

    print(f"\n## per video, medians of {args.repeats}, seconds (windows: analysed; s/crop: style + content "
          "per judged crop)")
    print(table(per_video_rows, ["precision", "video", "windows", "segments", "total", *STAGES, "s/crop",
                                 "peak GPU MB"]))
    labels = list(dict.fromkeys(r[0] for r in per_video_rows))
    if len(labels) >= 2:
        a, b = labels[0], labels[-1]
        print(f"per-video speed-up {b} against {a}: " + ", ".join(
            f"{vname} {totals[(a, vname)] / totals[(b, vname)]:.2f}x" for vname, _ in per_video))
    print("\n## throughput: N videos (720p composite and carphone alternating)")
    print(table(thr_rows, ["precision", "N", "seq s", "seq videos/s", "seq peak MB", "batched s",
                           "batched videos/s", "batched peak MB", *(f"b.{s}" for s in STAGES)]))
    print(f"\nwall time {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
