"""The cost of ``stylefusion extract --self-blend`` per real video against plain extraction.

Each repeat extracts the same N real videos (train split) into a fresh cache twice, alternating
the order: plain (one entry per video) and with ``--self-blend`` (the real entry plus its
self-blended pseudo-fake, from one front-end pass). Prints medians per real video and the ratio
of each repeat's pair. Videos: the carphone clip (176x144, 4 s) cut into N 1.2-second clips with
different starts, so every one has a real face.

    python benchmarks/bench_selfblend.py [--preset tiny|full] [--videos 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import median, set_threads

from videogen import carphone_path, encode_frames


def make_videos(folder: Path, n: int) -> list[Path]:
    from stylefusion.perturb import read_frames

    frames, fps = read_frames(carphone_path())
    out = []
    for i in range(n):
        start = int(i * (len(frames) - 30) / max(1, n - 1))
        path = folder / f"clip{i:02d}.mp4"
        encode_frames(path, frames[start:start + 30], width=176, height=144, fps=25, crf="18")
        out.append(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=("tiny", "full"))
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    threads = set_threads(args.threads)

    from stylefusion.detector import StyleFusionDetector, init_checkpoint
    from stylefusion.research.extract import extract
    from stylefusion.research.manifest import ManifestRecord

    work = Path(tempfile.mkdtemp(prefix="bench-sbi-"))
    try:
        videos = make_videos(work, args.videos)
        rows = [ManifestRecord(p.stem, str(p), 0, "train", "bench", "original") for p in videos]
        init_checkpoint(args.preset, work / "ckpt", 0, min_person_s=0.5)
        det = StyleFusionDetector.from_pretrained(work / "ckpt")
        # Warm-up: every video once with both kinds (MTCNN, allocator, the page cache of the files).
        extract(rows, det, work / "warm", progress=False, self_blend=True)
        plain, blend = [], []
        for r in range(args.repeats):
            for kind in (("plain", "blend") if r % 2 == 0 else ("blend", "plain")):
                cache = work / f"cache-{kind}-{r}"
                t0 = time.perf_counter()
                s = extract(rows, det, cache, progress=False, self_blend=kind == "blend")
                dt = (time.perf_counter() - t0) / len(rows)
                assert s.failed == 0, f"{kind}: {s.failed} videos failed"
                (plain if kind == "plain" else blend).append(dt)
        ratios = [b / p for p, b in zip(plain, blend)]
        print(f"preset {args.preset}, {args.videos} videos (176x144, 1.2 s, one face), {threads} threads, "
              f"{args.repeats} repeats")
        print(f"plain extraction:        {median(plain):.3f} s per video (min {min(plain):.3f})")
        print(f"with --self-blend:       {median(blend):.3f} s per real video, real + pseudo-fake entries "
              f"(min {min(blend):.3f})")
        print(f"ratio (paired, median):  {np.median(ratios):.2f}x  (per repeat: "
              f"{', '.join(f'{x:.2f}' for x in ratios)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
