"""Coverage of the front end on a folder of clips: how much of the on-screen face time is judged.

    python benchmarks/bench_coverage.py [--clips ../shared/clips] [--out coverage.json]
    python benchmarks/bench_coverage.py --compare before.json after.json

For each clip, ``analyse_people`` with the default config (8 windows, 4 people, as ``detect`` on a
CPU) and, per clip: the judged segments, the judged face-seconds (the sum over judged segments of
the time from the person's first to last sighting in it), whether nobody was judged, and, where
the front end reports spans (issue 21 on), the on-screen face-seconds (the sum of every span,
judged or not). Run it on two versions of the code (e.g. a ``git worktree`` of the previous commit
with ``PYTHONPATH`` pointing at it) and ``--compare`` the two files: the share of on-screen
face-seconds judged uses the newer file's on-screen seconds for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def measure(folder: Path) -> dict:
    from stylefusion.config import StyleFusionConfig
    from stylefusion.faces import FaceCropper
    from stylefusion.people import analyse_people
    from stylefusion.video import VIDEO_EXTENSIONS

    config = StyleFusionConfig()
    cropper = FaceCropper(config)
    out = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS):
        t0 = time.perf_counter()
        try:
            a = analyse_people(path, config, cropper, 8, 4)
        except Exception as exc:  # noqa: BLE001 - a clip that cannot be read is reported as such
            out[path.name] = {"error": str(exc)}
            continue
        judged = [s for s in a.segments if s.judged and s.first_s is not None]
        spans = getattr(a, "spans", None)
        out[path.name] = {
            "judged_segments": len(judged),
            "judged_seconds": sum(max(0.0, s.last_s - s.first_s) for s in judged),
            "on_screen_seconds": None if spans is None else sum(s.seconds for s in spans),
            "seconds": time.perf_counter() - t0,
        }
        print(path.name, out[path.name], file=sys.stderr)
    return out


def compare(before: dict, after: dict) -> None:
    names = sorted(set(before) & set(after))
    total = sum(after[n].get("on_screen_seconds") or 0 for n in names)
    print("| | before | after |\n| --- | --- | --- |")
    for label, key in (("judged face-seconds", "judged_seconds"), ("judged segments", "judged_segments")):
        b = sum(before[n].get(key, 0) for n in names)
        a = sum(after[n].get(key, 0) for n in names)
        print(f"| {label} | {b:.1f} | {a:.1f} |")
    b = sum(before[n].get("judged_seconds", 0) for n in names)
    a = sum(after[n].get("judged_seconds", 0) for n in names)
    print(f"| share of on-screen face-seconds judged ({total:.1f} s) | {b / total:.1%} | {a / total:.1%} |")
    with_face = [n for n in names if (after[n].get("on_screen_seconds") or 0) > 0]
    nb = sum(1 for n in with_face if not before[n].get("judged_segments"))
    na = sum(1 for n in with_face if not after[n].get("judged_segments"))
    print(f"| clips with a face on screen but no judged person (of {len(with_face)}) | {nb} | {na} |")
    print(f"| front-end seconds per clip (median) | {sorted(before[n].get('seconds', 0) for n in names)[len(names) // 2]:.1f} "
          f"| {sorted(after[n].get('seconds', 0) for n in names)[len(names) // 2]:.1f} |")
    print("\nclips whose judging changed:")
    for n in names:
        b, a = before[n].get("judged_segments", 0), after[n].get("judged_segments", 0)
        if (b == 0) != (a == 0):
            print(f"- {n}: {b} -> {a} judged segments")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="../shared/clips")
    ap.add_argument("--out", default="coverage.json")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        compare(*(json.loads(Path(p).read_text()) for p in args.compare))
        return 0
    folder = Path(args.clips)
    if not folder.is_dir():
        print(f"{folder}: no such folder", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(measure(folder), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
