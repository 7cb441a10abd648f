"""Re-identification descriptors measured on real clips: same person against different people,
before and after a colour / brightness / blur / noise flicker of the face.

    python benchmarks/bench_reid.py [--clips ../shared/clips] [--max-clips 43]

For every clip, the front end's scan (``stylefusion.people.scan``) finds the faces, shots and
tracks. Pairs, per descriptor:
- same person: the mean descriptor of a track's first half against its second half (the same
  person seen again after a gap, as re-identification meets them), only tracks of 6+ faces;
- same person, flickered: the same halves, the second one computed on faces given a random colour
  gain and offset, brightness change, blur or noise per frame (what a face swap looks like);
- different people: tracks of one clip that are on screen at the same time (certainly two people),
  and tracks of different clips.
Prints, per descriptor, the 1% quantile of same-person similarities, the 99% and max of the
different-people ones, and the share of different-people pairs above the same-person 1% quantile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from stylefusion.config import StyleFusionConfig
from stylefusion.faces import FaceCropper, identity_descriptor, track_faces
from stylefusion.people import find_shots, scan
from stylefusion.video import VideoReader, VIDEO_EXTENSIONS


def hue_sat(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = image[max(0, y1):max(y2, y1 + 1), max(0, x1):max(x2, x1 + 1)]
    small = cv2.resize(np.ascontiguousarray(patch), (32, 32), interpolation=cv2.INTER_AREA)
    h = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 16], [0, 180, 0, 256]).ravel()
    h = np.sqrt(h / max(h.sum(), 1))
    return h / (np.linalg.norm(h) + 1e-9)


def grey_thumb(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = image[max(0, y1):max(y2, y1 + 1), max(0, x1):max(x2, x1 + 1)]
    g = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY).astype(np.float32)
    s = cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA).ravel()
    s = s - s.mean()
    return s / (np.linalg.norm(s) + 1e-9)


DESCRIPTORS = {"identity (ours)": identity_descriptor, "hue x saturation": hue_sat, "grey 16x16": grey_thumb}


def flicker(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The face region of ``image`` with one random change of the kinds a manipulation makes."""
    out = image.astype(np.float32).copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    region = out[max(0, y1):y2, max(0, x1):x2]
    kind = rng.integers(4)
    if kind == 0:
        region[:] = region * rng.uniform(0.7, 1.3, 3) + rng.uniform(-30, 30, 3)
    elif kind == 1:
        region[:] = region * rng.uniform(0.6, 1.4)
    elif kind == 2 and region.size:
        region[:] = cv2.GaussianBlur(region, (0, 0), rng.uniform(1.0, 3.0))
    else:
        region[:] = region + rng.normal(0, 12, region.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="../shared/clips")
    ap.add_argument("--max-clips", type=int, default=43)
    args = ap.parse_args()
    folder = Path(args.clips)
    if not folder.is_dir():
        print(f"{folder}: no such folder", file=sys.stderr)
        return 2
    config = StyleFusionConfig()
    cropper = FaceCropper(config)
    rng = np.random.default_rng(0)
    tracks_all = []  # (clip, t0, t1, {name: (first, second, second_flickered)})
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)[:args.max_clips]:
        try:
            with VideoReader(path, config.max_frame_side) as reader:
                windows = reader.windows(config.window_s, 1)
                frames, _ = scan(reader, windows, config, cropper)
                find_shots(frames, windows, config)
                tracks = track_faces(frames, config)
                # the scan frames again, to compute other descriptors on the same faces
                plans = [("scan", np.array(sorted({f.index for f in frames})))] if frames else []
                images = {}
                for _, got in reader.iter_frames(plans, max_side=config.scan_max_side):
                    if got is not None:
                        images = {int(i): (im, got.scale) for i, im in zip(got.source_indices, got.images)}
        except Exception as exc:  # noqa: BLE001 - a clip that does not read is left out
            print(f"{path.name}: {exc}", file=sys.stderr)
            continue
        for tr in tracks:
            if len(tr.ks) < 6 or not images:
                continue
            half = len(tr.ks) // 2
            parts = {}
            for name, fn in DESCRIPTORS.items():
                def mean(ks, flick=False):
                    ds = []
                    for k in ks:
                        im, sc = images[frames[k].index]
                        box = tr.boxes[k] * sc
                        ds.append(fn(flicker(im, box, rng) if flick else im, box))
                    m = np.mean(ds, axis=0)
                    return m / (np.linalg.norm(m) + 1e-9)
                parts[name] = (mean(tr.ks[:half]), mean(tr.ks[half:]), mean(tr.ks[half:], True))
            tracks_all.append((path.name, frames[tr.ks[0]].time, frames[tr.ks[-1]].time, parts))
    print(f"{len(tracks_all)} tracks of 6+ faces from {len({t[0] for t in tracks_all})} clips\n")
    print("| descriptor | same 1% | same min | same flickered 1% | diff same clip 99% | diff max | diff other clips 99% | diff > same 1% |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in DESCRIPTORS:
        same = [float(p[name][0] @ p[name][1]) for *_, p in tracks_all]
        flick = [float(p[name][0] @ p[name][2]) for *_, p in tracks_all]
        diff_in, diff_out = [], []
        for i, (ci, a0, a1, pi) in enumerate(tracks_all):
            for cj, b0, b1, pj in tracks_all[i + 1:]:
                s = float(pi[name][1] @ pj[name][0])
                if ci == cj and a0 <= b1 and b0 <= a1:
                    diff_in.append(s)
                elif ci != cj:
                    diff_out.append(s)
        lo = float(np.quantile(same + flick, 0.01))
        diff = diff_in + diff_out
        print(f"| {name} | {np.quantile(same, 0.01):.3f} | {min(same):.3f} | {np.quantile(flick, 0.01):.3f} | "
              f"{np.quantile(diff_in, 0.99) if diff_in else float('nan'):.3f} | {max(diff):.3f} | "
              f"{np.quantile(diff_out, 0.99):.3f} | {np.mean(np.array(diff) > lo):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
