"""Per-video extraction time by stage: StyleFusion against the report's pipeline, same weights.

    python benchmarks/bench_extract.py [--repeats 3] [--quick] [--videos composite,carphone]
                                       [--precisions fp32,auto]

Inputs, made in a temp dir: a random FULL-size checkpoint (``init_checkpoint("full")``), a
1280x720 10-second composite face video (tests/videogen.py) and the real carphone clip.

Reference = the pipeline as the report describes it, written here: OpenCV reads EVERY frame
(``grab`` each one, ``retrieve`` the 32 uniformly sampled ones), its own MTCNN one frame at a time
at full resolution, the full 18-level pSp encoder (``StyleEncoder(levels=0..17)`` holding the
checkpoint's weights, oneDNN's direct convolutions as upstream, no Winograd) one frame at a time
keeping level 9, the content network one clip at a time, the same head.
Ours = ``StyleFusionDetector.detect`` and its per-stage timings, once per precision of
``--precisions`` (default ``fp32`` and ``auto``, side by side; ``auto`` is run only when it resolves
to something other than fp32 on this CPU, whose relevant flags are printed first).

Checks (the benchmark fails if they do not hold): on the same crops both pipelines give the same
level-9 latents (allclose, rtol 1e-4) and the same content vectors with ``fp32``; with ``bf16`` the
cosine similarity of each latent and content vector to the reference's is printed and must be at
least 0.999; our face box (MTCNN skipping
the fine pyramid levels on frames larger than ``detect_max_side``) overlaps the full-resolution box
with IoU >= 0.9 in every sampled frame. Repeats alternate which pipeline goes first; the table gives the median of each
stage and the ratio of the medians, and the total row also the median of per-repeat ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import composite_video, make_checkpoint, median, set_threads, table  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stylefusion.transforms import content_frames, style_inputs  # noqa: E402

STAGES = ("decode+sample", "faces", "style", "content", "head")
#: Our timings per stage of the table: the front end's scan (decoding and searching the scan frames,
#: shots, tracks, people) counts as "faces", with finding the person again in the span's frames.
OURS_KEYS = {"decode+sample": ("sampling",), "faces": ("scan", "faces"), "style": ("style",),
             "content": ("content",), "head": ("head",)}
STYLE_LEVEL = 9
IOU_MIN = 0.9
RTOL = 1e-4
BF16_COS_MIN = 0.999


class ReferencePipeline:
    """The report's way: every frame decoded, per-frame MTCNN at full size, full pSp per frame."""

    def __init__(self, det):
        from stylefusion.models.style import ALL_LEVELS, StyleEncoder

        c = det.config
        if STYLE_LEVEL not in c.style_levels:
            raise SystemExit(f"checkpoint style_levels={c.style_levels} lacks level {STYLE_LEVEL}")
        self.det = det
        self.config = c
        torch.manual_seed(1)  # the 17 unused style blocks get random weights, as upstream would hold
        self.full = StyleEncoder(width=c.style_width, units=c.style_units, levels=ALL_LEVELS,
                                 input_size=c.face_size)
        res = self.full.load_state_dict(det.style.state_dict(), strict=False)
        assert not res.unexpected_keys, res.unexpected_keys
        ours = {f"styles.{lv}." for lv in c.style_levels}
        assert all(k.startswith("styles.") and not k.startswith(tuple(ours)) for k in res.missing_keys), \
            [k for k in res.missing_keys if not k.startswith("styles.")]
        for k, v in det.style.state_dict().items():  # every shared weight is the same tensor value
            assert torch.equal(self.full.state_dict()[k], v), k
        # As upstream runs it: oneDNN's direct convolutions, not our Winograd path.
        self.full.eval().to(det.device).set_winograd(False)
        from facenet_pytorch import MTCNN

        # Its own MTCNN (the same packaged weights) with the config's thresholds, factor and
        # smallest face, so the reference searches the whole pyramid at full resolution.
        self.mtcnn = MTCNN(min_face_size=c.mtcnn_min_face_size, thresholds=list(c.mtcnn_thresholds),
                           factor=c.mtcnn_factor, post_process=False, select_largest=True,
                           keep_all=True, device=det.device)
        self.cropper = det.cropper
        self.level_index = list(range(18)).index(STYLE_LEVEL)

    def read(self, path):
        import cv2

        from stylefusion.video import sample_indices

        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        indices = sample_indices(n, self.config.num_frames)
        wanted = set(int(i) for i in indices)
        kept, i = {}, 0
        while cap.grab():  # decodes every frame
            if i in wanted:
                ok, bgr = cap.retrieve()
                kept[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
        cap.release()
        assert i == n, f"OpenCV read {i} frames, its header said {n}"
        return np.stack([kept[int(j)] for j in indices]), indices

    def faces(self, images):
        dets = []
        with torch.inference_mode():
            for im in images:  # one frame at a time, full resolution
                b, p = self.mtcnn.detect(im)
                if b is None or len(b) == 0:
                    dets.append((np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)))
                else:
                    dets.append((np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1)))
        # The report's MTCNN(select_largest=True): the largest confident face of each frame.
        conf = self.config.min_face_confidence
        chosen = []
        for b, p in dets:
            ok = [j for j in range(len(b)) if p[j] >= conf]
            chosen.append(max(ok, key=lambda j: (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])) if ok else None)
        h, w = images.shape[1:3]
        face_boxes = [None if j is None else dets[t][0][j] for t, j in enumerate(chosen)]
        crop_boxes = [self.cropper.crop_box(b, h, w) for b in face_boxes]
        crops = np.stack([self.cropper.crop(im, cb) for im, cb in zip(images, crop_boxes)])
        return crops, face_boxes

    def style(self, crops):
        out = []
        with torch.inference_mode():
            for crop in crops:  # one frame at a time through all 18 levels
                x = style_inputs(crop[None], self.config, self.det.device)
                out.append(self.full(x)[:, self.level_index].float().cpu())
        return torch.cat(out)[:, None]  # [T, 1, D]

    def content(self, crops):
        c = self.config
        out = []
        with torch.inference_mode():
            for k in range(c.num_clips):  # one clip at a time
                x = content_frames(crops[k * c.clip_len:(k + 1) * c.clip_len], c, self.det.device)
                out.append(self.det.content(x.transpose(0, 1)[None]).float().cpu())  # [1, 3, L, S, S]
        return torch.cat(out)

    def run(self, path):
        t = {}
        t0 = time.perf_counter()
        images, indices = self.read(path)
        t1 = time.perf_counter()
        crops, face_boxes = self.faces(images)
        t2 = time.perf_counter()
        style = self.style(crops)
        t3 = time.perf_counter()
        content = self.content(crops)
        t4 = time.perf_counter()
        self.det.classify(content[None], style[None])
        t5 = time.perf_counter()
        t.update(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))
        return t, dict(indices=indices, crops=crops, face_boxes=face_boxes, style=style, content=content)


def iou(a, b) -> float:
    from stylefusion.faces import iou as _iou

    return _iou(np.asarray(a, np.float64), np.asarray(b, np.float64))


def check(det, path, ref_out) -> dict:
    """Face boxes: ours against the reference's full-resolution ones (latents: :func:`check_latents`)."""
    # The front end's crops of the one person (scan, then the face found again in each frame of
    # the span), against the reference's boxes of the same source frames.
    a = det.people(path, max_windows=1, max_people=1)
    track = a.crops[0]
    ref_at = {int(i): k for k, i in enumerate(ref_out["indices"])}
    ious, crop_ious = [], []
    h, w = round(a.info["height"]), round(a.info["width"])
    for t, src in enumerate(track.source_indices.tolist()):
        ref_box = ref_out["face_boxes"][ref_at[src]] if src in ref_at else None
        if ref_box is None or track.probs[t] == 0:
            ious.append(1.0 if (ref_box is None and track.probs[t] == 0) else 0.0)
            continue
        ref_crop = det.cropper.crop_box(ref_box, h, w)
        crop_ious.append(iou(track.boxes[t], ref_crop))
        ious.append(crop_ious[-1])
    out = dict(min_iou=min(ious), median_iou=median(ious), iou_ok=min(ious) >= IOU_MIN,
               n_below=sum(v < IOU_MIN for v in ious), min_crop_iou=min(crop_ious or [float("nan")]),
               faces_found=sum(b is not None for b in ref_out["face_boxes"]), n=len(ious))
    return out


def check_latents(det, ref_out, n_latent: int) -> dict:
    """Latents and content vectors of the reference's crops through our code, at ``det.precision``:
    allclose (rtol 1e-4) in fp32, cosine >= BF16_COS_MIN in bf16."""
    crops = ref_out["crops"]
    sel = np.linspace(0, len(crops) - 1, n_latent).round().astype(int)
    ours_style = det.style_features(crops[sel])
    ref_style = ref_out["style"][sel]
    scale = float(ref_style.abs().max())
    lat_diff = float((ours_style - ref_style).abs().max())
    ours_content = det.content_features(crops)
    con_diff = float((ours_content - ref_out["content"]).abs().max())
    cos = torch.nn.functional.cosine_similarity
    lat_cos = float(cos(ours_style.flatten(1), ref_style.flatten(1)).min())
    con_cos = float(cos(ours_content, ref_out["content"]).min())
    if det.precision == "fp32":
        lat_ok = torch.allclose(ours_style, ref_style, rtol=RTOL, atol=RTOL * scale)
        con_ok = torch.allclose(ours_content, ref_out["content"], rtol=RTOL,
                                atol=RTOL * float(ref_out["content"].abs().max()))
        rule = f"allclose rtol {RTOL}"
    else:
        lat_ok, con_ok, rule = lat_cos >= BF16_COS_MIN, con_cos >= BF16_COS_MIN, f"cosine >= {BF16_COS_MIN}"
    return dict(precision=det.precision, n_latent=len(sel), latent_max_abs_diff=lat_diff, latent_scale=scale,
                latent_ok=lat_ok, latent_cos_min=lat_cos, content_max_abs_diff=con_diff, content_ok=con_ok,
                content_cos_min=con_cos, rule=rule)


def warm_up(det, ref, precisions) -> None:
    """One pass of each network in each precision (builds the fp32 Winograd filters, primes oneDNN)."""
    c = det.config
    crops = np.zeros((c.clip_len * c.num_clips, c.face_size, c.face_size, 3), np.uint8)
    for prec in precisions:
        det.set_precision(prec)
        det.style_features(crops[:1])
        det.content_features(crops)
    with torch.inference_mode():
        ref.full(torch.zeros(1, 3, c.face_size, c.face_size))
        det.cropper.mtcnn.detect(np.zeros((1, 120, 160, 3), np.uint8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="1 repeat, a 4-second composite video, 4 crops for the latent check")
    ap.add_argument("--videos", default="composite,carphone", help="comma list of composite, carphone")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the composite video")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: min(2, cores))")
    ap.add_argument("--latent-crops", type=int, default=8, help="crops through both encoders for the check")
    ap.add_argument("--precisions", default="fp32,auto",
                    help="comma list of our precisions to time (fp32, bf16, auto); auto is dropped when it "
                         "resolves to a precision already listed")
    ap.add_argument("--workdir", default=None, help="keep inputs here instead of a temp dir")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds, args.latent_crops = 1, min(args.seconds, 4.0), 4
    threads = set_threads(args.threads)

    from videogen import carphone_path

    from stylefusion.detector import StyleFusionDetector
    from stylefusion.precision import describe_cpu, resolve_precision

    tmp = tempfile.TemporaryDirectory(prefix="sf-bench-extract-")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = make_checkpoint(work / "full-ckpt", "full")
    videos = {}
    for name in args.videos.split(","):
        if name == "composite":
            videos[f"composite 1280x720 {args.seconds:g}s"] = composite_video(
                work / f"composite-{args.seconds:g}s.mp4", args.seconds)
        elif name == "carphone":
            videos["carphone 176x144 4s"] = carphone_path()
        else:
            raise SystemExit(f"unknown video {name!r}")
    # Our runs, labelled as asked ("auto" shows what it resolved to) and without duplicates.
    ours: dict[str, str] = {}  # label -> precision
    for req in args.precisions.split(","):
        prec = resolve_precision(req, "cpu")
        if prec in ours.values():
            print(f"# {req} resolves to {prec} on this CPU: timed once, as {prec}")
            continue
        ours[f"auto={prec}" if req == "auto" else prec] = prec
    det = StyleFusionDetector.from_pretrained(ckpt, precision="fp32").eval()
    ref = ReferencePipeline(det)
    warm_up(det, ref, list(ours.values()))
    print(f"# bench_extract: torch {torch.__version__}, {threads} threads, preset {det.config.preset}, "
          f"T={det.config.num_frames}, detect_max_side={det.config.detect_max_side}, "
          f"repeats={args.repeats}, ours: {', '.join(ours)}; setup {time.perf_counter() - t0:.1f}s")
    print(f"# {describe_cpu()}", flush=True)
    from stylefusion.detector import CPU_STYLE_BATCH

    print("# style encoder on the CPU (faces per pass, per stem pass): "
          + ", ".join(f"{p} {CPU_STYLE_BATCH[p]}" for p in dict.fromkeys(ours.values())), flush=True)

    failures = []
    summary = []
    labels = list(ours)
    for vname, path in videos.items():
        times = {who: {s: [] for s in STAGES} for who in ["reference", *labels]}
        scan_share: list[float] = []
        totals = {who: [] for who in ["reference", *labels]}
        checks = None
        lat_checks = {}
        for r in range(args.repeats):
            order = ["reference", *labels]
            order = order[r % len(order):] + order[:r % len(order)]  # rotate who goes first
            this = {}
            for who in order:
                if who == "reference":
                    this[who], ref_out = ref.run(path)
                    if checks is None:
                        checks = check(det, path, ref_out)
                        for label in labels:
                            det.set_precision(ours[label])
                            lat_checks[label] = check_latents(det, ref_out, args.latent_crops)
                else:
                    det.set_precision(ours[who])
                    res = det.detect(path)
                    assert res.checkpoint["precision"] == ours[who], res.checkpoint
                    this[who] = {s: sum(res.timings.get(k, 0.0) for k in OURS_KEYS[s]) for s in STAGES}
                    scan_share.append(res.timings.get("scan", 0.0) / max(res.timings["total"], 1e-9))
            for who, t in this.items():
                for s in STAGES:
                    times[who][s].append(t[s])
                totals[who].append(sum(t.values()))
            print(f"  {vname} repeat {r + 1}/{args.repeats}: reference {totals['reference'][-1]:.2f}s, " + ", ".join(
                f"{who} {totals[who][-1]:.2f}s ({totals['reference'][-1] / totals[who][-1]:.2f}x)" for who in labels),
                flush=True)
        rows = []
        for s in [*STAGES, "total"]:
            med = {who: (median(times[who][s]) if s != "total" else median(totals[who])) for who in times}
            rows.append([s, med["reference"], *[med[w] for w in labels],
                         *[med["reference"] / med[w] if med[w] > 0 else float("nan") for w in labels]])
        paired = {who: median([a / b for a, b in zip(totals["reference"], totals[who])]) for who in labels}
        print(f"\n## {vname}: {path}")
        print(table(rows, ["stage", "reference median s", *[f"{w} median s" for w in labels],
                           *[f"ratio {w}" for w in labels]]))
        best = {who: min(totals["reference"]) / min(totals[who]) for who in labels}
        for who in labels:
            goal = 4 if ours[who] == "bf16" else 3
            print(f"{who}: median of per-repeat total ratios {paired[who]:.2f}x (goal >= {goal}x: "
                  f"{'met' if paired[who] >= goal else 'NOT met'}); ratio of the fastest repeats "
                  f"{best[who]:.2f}x (less sensitive to other load on the machine)")
        print(f"scan (front end: scan frames, shots, tracks, people): median {median(scan_share):.1%} of our per-video time")
        print(f"faces: IoU(ours, full-resolution) min {checks['min_iou']:.3f}, median {checks['median_iou']:.3f} "
              f"over {checks['n']} frames (reference found a face in {checks['faces_found']}); "
              f">= {IOU_MIN}: {checks['iou_ok']} ({checks['n_below']} frames below); "
              f"their 256x256 crop boxes: min IoU {checks['min_crop_iou']:.3f}")
        for who, lc in lat_checks.items():
            print(f"{who}: level-{STYLE_LEVEL} latents, same {lc['n_latent']} crops: max |diff| "
                  f"{lc['latent_max_abs_diff']:.2e} (max |latent| {lc['latent_scale']:.2e}), min cosine "
                  f"{lc['latent_cos_min']:.6f}, {lc['rule']}: {lc['latent_ok']}; content vectors max |diff| "
                  f"{lc['content_max_abs_diff']:.2e}, min cosine {lc['content_cos_min']:.6f}: {lc['content_ok']}")
            for key in ("latent_ok", "content_ok"):
                if not lc[key]:
                    failures.append(f"{vname} {who}: {key}")
        print(flush=True)
        if not checks["iou_ok"]:
            failures.append(f"{vname}: iou_ok")
        summary.append([vname, median(totals["reference"]), *[median(totals[w]) for w in labels],
                        *[paired[w] for w in labels], *[best[w] for w in labels]])

    print("## summary (per video, medians)")
    print(table(summary, ["video", "reference s", *[f"{w} s" for w in labels],
                          *[f"ratio {w} (paired median)" for w in labels],
                          *[f"ratio {w} (fastest)" for w in labels]]))
    print(f"# {describe_cpu()}; load average at the end {os.getloadavg()[0]:.2f} (1 min)")
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    if failures:
        print("CHECKS FAILED: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
