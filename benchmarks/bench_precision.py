"""bf16 against fp32 on real clips: latents, content vectors and the head's logit, per segment.

    python benchmarks/bench_precision.py [--clips ../shared/clips] [--model /tmp/full] [--preset full]
                                         [--max-windows 1] [--max-people 1] [--limit N]

For every video in ``--clips`` (a folder, read in place), the detector finds the people once
(MTCNN always runs in fp32), then the same judged segments' crops go through both extractors in
fp32 (with Winograd, the exact path) and in bf16 (autocast, no Winograd), and both feature sets
through the same head. Per clip it prints, over its segments: the cosine similarity of the style
latents (one per crop and level: min and median), of the content vectors (one per clip: min and
median), the largest |delta logit| of the head and the largest |delta p| (sigmoid of the logit, for
an untrained head a number with no meaning as a verdict), and the extractors' seconds in each
precision. A summary over all clips follows. The checkpoint is random (``init_checkpoint``,
seed 0) unless ``--model`` names one: agreement of two number formats does not need trained
weights, though a trained head's sensitivity to its inputs may differ from a random one's.

Exit 1 when a bf16 run built Winograd filters (it must not) or no clip gave a segment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, make_checkpoint, median, set_threads, table  # noqa: E402

import torch  # noqa: E402

SKIP_SUFFIXES = {".md", ".txt", ".json", ".csv"}


def _winograd_built(det) -> int:
    from stylefusion.models.winograd import WinogradConv2d

    return sum(m._u is not None for m in det.style.modules() if isinstance(m, WinogradConv2d))


def _take_winograd_cache(det) -> dict:
    """Remove the cached Winograd filters (to be put back by :func:`_restore`), so that what a bf16
    run builds shows."""
    from stylefusion.models.winograd import WinogradConv2d

    taken = {}
    for m in det.style.modules():
        if isinstance(m, WinogradConv2d):
            taken[m], m._u, m._u_key = (m._u, m._u_key), None, None
    return taken


def _restore(taken: dict) -> None:
    for m, (u, key) in taken.items():
        m._u, m._u_key = u, key


def compare(det, path: Path, max_windows: int, max_people: int) -> dict:
    """One clip: people once, then both precisions on the same crops."""
    t0 = time.perf_counter()
    a = det.people(path, max_windows, max_people)
    faces_s = time.perf_counter() - t0
    if not a.judged:
        return {"segments": 0, "faces_s": faces_s}
    out = {}
    for prec in ("fp32", "bf16"):
        det.set_precision(prec)
        taken = _take_winograd_cache(det) if prec == "bf16" else {}
        timings: dict[str, float] = {}
        content, style = det._features(a.crops, timings)
        logits = det.classify(content, style).logits.float().reshape(-1)
        out[prec] = dict(content=content, style=style, logits=logits, style_s=timings["style"],
                         content_s=timings["content"], built=_winograd_built(det) if prec == "bf16" else None)
        _restore(taken)
    f, b = out["fp32"], out["bf16"]
    d = f["style"].shape[-1]
    cos_style = torch.nn.functional.cosine_similarity(f["style"].reshape(-1, d), b["style"].reshape(-1, d))
    dc = f["content"].shape[-1]
    cos_content = torch.nn.functional.cosine_similarity(f["content"].reshape(-1, dc), b["content"].reshape(-1, dc))
    rel_style = float((f["style"] - b["style"]).abs().max() / f["style"].abs().max())
    dlogit = (f["logits"] - b["logits"]).abs()
    dp = (torch.sigmoid(f["logits"]) - torch.sigmoid(b["logits"])).abs()
    return {"segments": len(a.judged), "faces_s": faces_s, "crops": sum(len(t.crops) for t in a.crops),
            "style_cos_min": float(cos_style.min()), "style_cos_median": float(cos_style.median()),
            "content_cos_min": float(cos_content.min()), "content_cos_median": float(cos_content.median()),
            "style_rel_max": rel_style, "dlogit_max": float(dlogit.max()), "dp_max": float(dp.max()),
            "logit_abs_max": float(f["logits"].abs().max()), "logits": f["logits"].tolist(),
            "fp32_s": f["style_s"] + f["content_s"], "bf16_s": b["style_s"] + b["content_s"],
            "fp32_style_s": f["style_s"], "bf16_style_s": b["style_s"], "bf16_built": b["built"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "clips"), help="folder of videos (read in place)")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: a random one of --preset)")
    ap.add_argument("--preset", default="full", choices=["full", "tiny"])
    ap.add_argument("--max-windows", type=int, default=1, help="windows per clip (default 1)")
    ap.add_argument("--max-people", type=int, default=1, help="people per window (default 1: the most present)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N clips (sorted by name)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)

    from stylefusion.detector import StyleFusionDetector
    from stylefusion.errors import StyleFusionError
    from stylefusion.precision import describe_cpu

    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="sf-bench-precision-")
    ckpt = Path(args.model) if args.model else make_checkpoint(Path(tmp.name) / args.preset, args.preset)
    det = StyleFusionDetector.from_pretrained(ckpt, precision="fp32")
    clips = sorted(p for p in Path(args.clips).iterdir() if p.is_file() and p.suffix.lower() not in SKIP_SUFFIXES)
    if args.limit:
        clips = clips[:args.limit]
    print(f"# bench_precision: torch {torch.__version__}, {threads} threads, preset {det.config.preset}, "
          f"{len(clips)} clips from {args.clips}, max_windows={args.max_windows}, max_people={args.max_people}")
    print(f"# {describe_cpu()}", flush=True)

    rows, results, failures = [], [], []
    for i, path in enumerate(clips, 1):
        t0 = time.perf_counter()
        try:
            r = compare(det, path, args.max_windows, args.max_people)
        except StyleFusionError as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            r = {"segments": 0, "error": why.removeprefix(f"{path}: ")[:40]}
        r["wall_s"] = time.perf_counter() - t0
        r["clip"] = path.name
        results.append(r)
        if r["segments"]:
            if r["bf16_built"]:
                failures.append(f"{path.name}: bf16 built {r['bf16_built']} Winograd filters")
            print(f"[{i}/{len(clips)}] {path.name}: {r['segments']} segments, style cos min {r['style_cos_min']:.6f}, "
                  f"content cos min {r['content_cos_min']:.6f}, max |dlogit| {r['dlogit_max']:.2e}; "
                  f"fp32 {r['fp32_s']:.1f}s, bf16 {r['bf16_s']:.1f}s ({r['wall_s']:.0f}s)", flush=True)
            rows.append([path.name[:44], r["segments"], f"{r['style_cos_min']:.6f}", f"{r['style_cos_median']:.6f}",
                         f"{r['content_cos_min']:.6f}", f"{r['content_cos_median']:.6f}", f"{r['style_rel_max']:.1e}",
                         f"{r['dlogit_max']:.1e}", f"{r['logit_abs_max']:.2f}", f"{r['dp_max']:.1e}",
                         r["fp32_style_s"] / r["crops"], r["bf16_style_s"] / r["crops"]])
        else:
            why = r.get("error", "no judged segment")
            print(f"[{i}/{len(clips)}] {path.name}: {why} ({r['wall_s']:.0f}s)", flush=True)
            rows.append([path.name[:44], 0, why, "", "", "", "", "", "", "", "", ""])

    print("\n## per clip (bf16 against fp32, same crops, same head)")
    print(table(rows, ["clip", "segs", "style cos min", "style cos med", "content cos min", "content cos med",
                       "style max rel", "max |dlogit|", "max |logit|", "max |dp|", "fp32 s/crop", "bf16 s/crop"]))
    ok = [r for r in results if r["segments"]]
    if not ok:
        print("no clip gave a judged segment")
        return 1
    summary = [
        ["clips with segments / all", f"{len(ok)} / {len(results)}"],
        ["segments", sum(r["segments"] for r in ok)],
        ["style latent cosine: min over all", f"{min(r['style_cos_min'] for r in ok):.6f}"],
        ["style latent cosine: median of clip medians", f"{median(r['style_cos_median'] for r in ok):.6f}"],
        ["content vector cosine: min over all", f"{min(r['content_cos_min'] for r in ok):.6f}"],
        ["content vector cosine: median of clip medians", f"{median(r['content_cos_median'] for r in ok):.6f}"],
        ["style max |diff| / max |latent|: worst clip", f"{max(r['style_rel_max'] for r in ok):.2e}"],
        ["max |delta logit| over all", f"{max(r['dlogit_max'] for r in ok):.2e}"],
        ["median of per-clip max |delta logit|", f"{median(r['dlogit_max'] for r in ok):.2e}"],
        ["max |logit| (fp32), for scale", f"{max(r['logit_abs_max'] for r in ok):.3f}"],
        ["std of fp32 logits over all segments (between-video spread)",
         f"{statistics.pstdev([v for r in ok for v in r['logits']]):.2e}"],
        ["max |delta p| over all", f"{max(r['dp_max'] for r in ok):.2e}"],
        ["style s/crop fp32 / bf16 (medians)", (f"{median(r['fp32_style_s'] / r['crops'] for r in ok):.3f} / "
                                                f"{median(r['bf16_style_s'] / r['crops'] for r in ok):.3f}")],
        ["extractors s fp32 / bf16 (sums)", f"{sum(r['fp32_s'] for r in ok):.0f} / {sum(r['bf16_s'] for r in ok):.0f}"],
        ["Winograd filters built by bf16 runs", sum(r["bf16_built"] or 0 for r in ok)],
    ]
    print("\n## summary")
    print(table(summary, ["figure", "value"]))
    print(f"wall time {time.perf_counter() - t_start:.0f}s")
    if failures:
        print("CHECKS FAILED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
