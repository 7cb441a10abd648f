"""Time to explain one segment with the full preset: contributions and 4 frames' heatmaps.

    python benchmarks/bench_explain.py [--frames 4] [--steps 16] [--repeats 3] [--threads 2] [--seed 0]

A random full-preset detector (``StyleFusionDetector(preset_config("full"))``: slow_r50 trunk,
pSp level-9 encoder, the report's head) and 32 random 256x256 crops. Their features are extracted
once in float32 (``stylefusion.evidence.fp32_features``, timed for context), then
``explain_segment`` runs ``--repeats`` times: the temporal-occlusion contributions of the 32 frames
and 2 clips (one head pass) and, for the ``--frames`` frames that pushed most toward "fake", the
style and content heatmaps (Integrated Gradients, ``--steps`` steps, each a forward and backward
pass in float32 through the extractor). The head is random, so the untrained check is bypassed
(``allow_untrained=True``): the cost does not depend on the weights' values.

Printed: the CPU's relevant flags, the medians (total, and per frame), the peak resident memory,
and the load average of the machine (the project machines are shared: another process's load
only ever adds time).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import median, peak_rss_mb, set_threads, table  # noqa: E402


def load_average() -> str:
    """The 1/5/15-minute load averages of the machine (``/proc/loadavg``)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - not Linux
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=4, help="frames given heatmaps (default 4)")
    ap.add_argument("--steps", type=int, default=None, help="Integrated Gradients steps (default: the library's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores, at most 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and crops")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.repeats < 1:
        ap.error("--frames and --repeats must be >= 1")

    import numpy as np
    import torch

    from stylefusion import evidence as ev
    from stylefusion.config import preset_config
    from stylefusion.detector import StyleFusionDetector
    from stylefusion.precision import describe_cpu

    threads = set_threads(args.threads)
    steps = args.steps or ev.DEFAULT_STEPS
    print(f"# {describe_cpu()}; {threads} threads; load average at the start {load_average()}")
    torch.manual_seed(args.seed)
    det = StyleFusionDetector(preset_config("full"), precision="fp32").eval()
    cfg = det.config
    crops = np.random.default_rng(args.seed).integers(0, 256, (cfg.num_frames, cfg.face_size, cfg.face_size, 3),
                                                      dtype=np.uint8)
    t0 = time.perf_counter()
    content, style = ev.fp32_features(det, crops)
    features_s = time.perf_counter() - t0

    totals, contributions_s = [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        ev.frame_contributions(det.fusion, content, style)
        contributions_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evidence = ev.explain_segment(det, crops, content, style, max_frames=args.frames, n_steps=steps,
                                      allow_untrained=True)
        totals.append(time.perf_counter() - t0)
        print(f"run {r + 1}/{args.repeats}: {totals[-1]:.1f} s, frames "
              f"{[h.position for h in evidence.heatmaps]}, load average {load_average()}", flush=True)
    rows = [
        ["features (fp32, 32 crops, once)", features_s, "-"],
        ["contributions (32 frames + 2 clips)", median(contributions_s), "-"],
        [f"explain_segment ({args.frames} frames, {steps} steps)", median(totals), median(totals) / args.frames],
    ]
    print(table(rows, ["step", "median s", "s per frame"]))
    print(f"# peak RSS {peak_rss_mb():.0f} MB; method {evidence.heatmaps[0].method}; "
          f"load average at the end {load_average()} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
