"""The processing-history table of issue 25: bits per pixel, H.264 quantiser and recapture signs of
every clip in ``../shared/clips`` (plus carphone and carphone re-encoded at CRF 45), and the
Content Credentials state of each.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/provenance_table.py [CLIPS_DIR]

Prints a Markdown table. The clips are research-only fixtures that never enter the repository, so
the table is the record of what the defaults of :mod:`stylefusion.history` were chosen against.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from stylefusion.history import history_reasons, measure_history  # noqa: E402
from stylefusion.provenance import read_provenance  # noqa: E402

RAW = {".264": {"format": "h264"},
       ".yuv": {"format": "rawvideo", "options": {"video_size": "320x192", "pixel_format": "yuv420p", "framerate": "12"}}}


def _carphone(tmp: Path) -> list[Path]:
    try:
        import av
        from videogen import carphone_path, encode_frames
    except Exception:  # noqa: BLE001 - carphone is optional here
        return []
    src = carphone_path()
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    crf45 = encode_frames(tmp / "carphone_crf45.mp4", frames, width=176, height=144, fps=30, crf="45")
    return [src, crf45]


def main() -> None:
    clips = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "clips"
    files = sorted(p for p in clips.iterdir() if p.suffix.lower() != ".md") if clips.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        files += _carphone(Path(tmp))
        print("| clip | codec / profile | size | fps | kbit/s | bpp | mean QP | dup | jitter | borders t/b/l/r "
              "| encoder | recapture signs (score) | reasons | provenance | s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for f in files:
            t = time.perf_counter()
            h = measure_history(f, **RAW.get(f.suffix.lower(), {}))
            prov = read_provenance(f)
            dt = time.perf_counter() - t
            b = h.border_px
            fmt = (lambda x, spec: "-" if x is None else format(x, spec))
            print(f"| {f.name} | {h.codec} {h.profile or ''} | {h.width}x{h.height} | {fmt(h.fps, '.2f')} "
                  f"| {fmt(h.bit_rate and h.bit_rate / 1000, '.0f')} | {fmt(h.bpp, '.4f')} | {fmt(h.mean_qp, '.1f')} "
                  f"| {fmt(h.duplicate_fraction, '.2f')} | {fmt(h.timestamp_jitter, '.3f')} "
                  f"| {b.get('top', '-')}/{b.get('bottom', '-')}/{b.get('left', '-')}/{b.get('right', '-')} "
                  f"| {h.encoder or '-'} | {', '.join(h.recapture_signs) or '-'} ({h.recapture_score}) "
                  f"| {', '.join(history_reasons(h)) or '-'} | {prov.status} | {dt:.1f} |"
                  + (f" error: {h.error}" if h.error else ""))


if __name__ == "__main__":
    main()
