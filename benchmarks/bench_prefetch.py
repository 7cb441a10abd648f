"""Decoding ahead: windows → frames → faces with and without the decode worker (``analyse_people``).

    python benchmarks/bench_prefetch.py [--seconds 60] [--rounds 3] [--wait-idle 0]

Input: the 1280x720 10-second composite face video looped to ``--seconds`` (packets remuxed; 60 s
= 4 windows of 15 s), cached in ``~/.cache/stylefusion-bench``. Each round runs
``analyse_people`` (the default config, MTCNN on the CPU) with ``prefetch=False`` (each window
decoded in the consumer's thread, then its faces detected) and ``prefetch=True`` (window k+1
decoded by a worker thread while the faces of window k are detected), in alternating order; the
header says which one ``analyse_people`` picks by itself here (``people.decode_ahead``: on when a
core is free for the decoder, e.g. ``--threads 1`` on 2 cores). Printed: wall time per
video, the speed-up against ``off`` (median of per-round ratios), the ``sampling`` (decode, or
waiting for it) and ``faces`` seconds, and the share of the cores other processes kept busy. The
modes are checked to find the same segments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _common import (  # noqa: E402
    CACHE_DIR, ForeignLoad, composite_video, looped_video, median, set_threads, table, wait_until_idle,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="video length (a multiple of 10 s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="before each run wait up to this many seconds for other processes to use < 10%% of the cores")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)

    from stylefusion.config import StyleFusionConfig
    from stylefusion.faces import FaceCropper
    from stylefusion import people
    from stylefusion.people import analyse_people
    from stylefusion.precision import describe_cpu

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    base = composite_video(CACHE_DIR / "composite-10s.mp4", 10.0)
    copies = max(1, round(args.seconds / 10))
    path = looped_video(base, CACHE_DIR / f"composite-10s-x{copies}.mp4", copies)
    config = StyleFusionConfig()
    cropper = FaceCropper(config)
    analyse_people(path, config, cropper, 1, 4)  # warm-up (MTCNN, file cache)
    print(f"# bench_prefetch: {copies * 10} s 1280x720 video, window_s {config.window_s:g}, {threads} threads; "
          f"the default here (people.decode_ahead): {'on' if people.decode_ahead(cropper) else 'off'}")
    print(f"# {describe_cpu()}", flush=True)
    modes = {"off": False, "on": True}
    runs: dict[str, list] = {m: [] for m in modes}
    summaries = {}
    for r in range(args.rounds):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for mode in order:
            if args.wait_idle:
                wait_until_idle(args.wait_idle)
            timings: dict[str, float] = {}
            with ForeignLoad() as load:
                t0 = time.perf_counter()
                a = analyse_people(path, config, cropper, 8, 4, timings, prefetch=modes[mode])
                wall = time.perf_counter() - t0
            runs[mode].append((wall, timings.get("sampling", 0.0), timings.get("faces", 0.0), load.share))
            summaries[mode] = [(s.window, s.person, s.judged) for s in a.segments]
        print(f"  round {r + 1}: " + ", ".join(f"{m} {runs[m][-1][0]:.2f}s ({runs[m][-1][3]:.0%})" for m in modes)
              + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
    if len({str(v) for v in summaries.values()}) != 1:
        raise SystemExit("decoding ahead changed the segments found")
    off = runs["off"]
    rows = [[m, median(x[0] for x in v), min(x[0] for x in v), median(o[0] / x[0] for o, x in zip(off, v)),
             median(x[1] for x in v), median(x[2] for x in v), median(x[3] for x in v)] for m, v in runs.items()]
    print(f"\n## analyse_people, {len(a.windows)} windows ({sum(w.analysed for w in a.windows)} analysed), "
          f"{args.rounds} rounds (speed-up: median of the per-round ratios to off)")
    print(table(rows, ["decode ahead", "wall s", "min", "speed-up", "sampling s", "faces s", "others' load"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
