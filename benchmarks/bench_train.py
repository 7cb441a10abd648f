"""Time per epoch of fusion-head training on a cache of 5,000 videos with the full preset's sizes.

The target (issue 5): an epoch over 5,000 cached videos in under 10 s on 2 CPU cores. The cache is
synthetic — random features of the full preset's shapes (content [2, 2048], style [32, 1, 512]),
written as real cache entries (``--segments`` segments per video, one per window, 10 s each) for a
real full-preset checkpoint — and training goes through ``stylefusion.research.train.train``, so
what is timed is what users run: loading the cache into memory once, then epochs of batches of
segments by index (train + validation pass per epoch, validation scored per video).

    python benchmarks/bench_train.py                      # 5,000 videos, 5 epochs, torch threads
    python benchmarks/bench_train.py --threads 1 --videos 1000
    python benchmarks/bench_train.py --segments 2         # 20-second videos: 2 windows each

Prints the time to write and to load the cache and the median (and min/max) epoch time. The
machines are shared and noisy: compare medians measured in one run.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stylefusion.research.train import TrainOptions


def build_cache(root: Path, n: int, seed: int = 0, segments: int = 1) -> Path:
    """A full-preset checkpoint and ``n`` cache entries of ``segments`` random segments each."""
    from stylefusion.detector import init_checkpoint
    from stylefusion.research.cache import FeatureCache, FeatureKey
    from stylefusion.research.manifest import ManifestRecord
    from stylefusion.results import VideoFeatures

    ckpt = root / "ckpt"
    model = init_checkpoint("full", ckpt, seed)
    key = FeatureKey.from_model(model, str(ckpt))
    c = model.config
    cache = FeatureCache(root / "cache")
    rng = np.random.default_rng(seed)
    t = c.num_frames
    fingerprint = {"video_size": "0", "video_mtime_ns": "0", "video_sha256_headtail": ""}
    for i in range(n):
        label = int(rng.random() < 0.5)
        split = "val" if i % 10 == 0 else "train"
        rec = ManifestRecord(f"bench/{i:05d}", f"/nonexistent/{i:05d}.mp4", label, split, "bench",
                             "fake" if label else "real")
        feats = [VideoFeatures(
            content=torch.from_numpy(rng.standard_normal((c.num_clips, c.content_dim), dtype=np.float32)),
            style=torch.from_numpy(rng.standard_normal((t, len(c.style_levels), c.style_dim), dtype=np.float32)),
            source_indices=np.arange(t) + 250 * w, timestamps=np.arange(t) / 25.0 + 10 * w,
            boxes=np.zeros((t, 4), np.float32), probs=np.ones(t, np.float32), fallback=np.zeros(t, bool),
            window=w) for w in range(segments)]
        cache.write(rec, key, feats, fingerprint, duration=10.0 * segments, num_windows=segments)
    return ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--segments", type=int, default=1, help="segments (windows) per video (default 1)")
    parser.add_argument("--batch-size", type=int, default=TrainOptions(cache="", out="").batch_size,
                        help="videos per batch (default: stylefusion train's default)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--workdir", help="keep the cache here and reuse it on the next run "
                                          "(default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    from stylefusion.research.cache import is_current, read_header
    from stylefusion.research.data import load_features
    from stylefusion.research.train import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        entries = sorted((root / "cache").rglob("*.safetensors"))
        meta = read_header(entries[0]) if entries else None
        if ((root / "ckpt" / "model.safetensors").is_file() and len(entries) == args.videos and is_current(meta)
                and meta.get("segments") == str(args.segments)):
            ckpt = root / "ckpt"  # --workdir from an earlier run of this layout: reuse its cache
        else:
            ckpt = build_cache(root, args.videos, segments=args.segments)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = load_features(root / "cache")
        t_load = time.perf_counter() - t0
        del data
        opts = TrainOptions(cache=str(root / "cache"), out=str(root / "out"), model=str(ckpt),
                            epochs=args.epochs, patience=args.epochs + 1, batch_size=args.batch_size)
        result = train(opts)
        epochs = [row["seconds"] for row in result.history]
        print(f"videos {args.videos} (train {int(args.videos * 0.9)}, val {args.videos // 10}), "
              f"{args.segments} segment(s) each, full preset features, batch {args.batch_size} segments, "
              f"torch threads {torch.get_num_threads()}")
        print(f"cache write {t_write:.1f} s, cache load into memory {t_load:.1f} s, whole train() "
              f"{result.seconds:.1f} s")
        print(f"epoch (train + val) seconds: median {statistics.median(epochs):.2f}, min {min(epochs):.2f}, "
              f"max {max(epochs):.2f} over {len(epochs)} epochs")


if __name__ == "__main__":
    main()
