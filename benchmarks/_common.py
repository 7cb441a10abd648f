"""Helpers shared by the benchmarks: inputs (videos, checkpoints), timing, tables, peak memory.

The benchmarks run with plain Python from the repository root (``python benchmarks/bench_x.py``);
they import ``tests/videogen.py`` for the generated videos and the carphone clip.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # videogen.py as a plain module

CACHE_DIR = Path(os.environ.get("STYLEFUSION_BENCH_CACHE", Path.home() / ".cache" / "stylefusion-bench"))


def set_threads(n: int | None) -> int:
    """Use ``n`` intra-op threads (default: all cores, at most 2, as on the project machines)."""
    import torch

    n = n or max(1, min(2, os.cpu_count() or 1))
    torch.set_num_threads(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:  # pragma: no cover
        pass
    return n


def median(values) -> float:
    values = [float(v) for v in values]
    return statistics.median(values) if values else float("nan")


@contextmanager
def timer(out: dict, key: str, sync=None):
    """Add the wall time of the block to ``out[key]`` (``sync()`` first and last, e.g. CUDA)."""
    if sync:
        sync()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if sync:
            sync()
        out[key] = out.get(key, 0.0) + time.perf_counter() - t0


def table(rows: list[list], header: list[str]) -> str:
    """A plain-text table; floats with 3 significant decimals."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def make_checkpoint(out_dir: Path, preset: str = "full", seed: int = 0) -> Path:
    """A random checkpoint of ``preset`` (what ``stylefusion init`` writes), reused if present."""
    from stylefusion.detector import init_checkpoint

    out_dir = Path(out_dir)
    if not (out_dir / "model.safetensors").is_file():
        init_checkpoint(preset, out_dir, seed=seed)
    return out_dir


def composite_video(path: Path, seconds: float) -> Path:
    """The carphone face moving over a 1280x720 background (tests/videogen.py), reused if present."""
    from videogen import composite_face_video

    path = Path(path)
    if not path.is_file():
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
        composite_face_video(tmp, seconds, 1280, 720)
        os.replace(tmp, path)
    return path


PEOPLE_FPS = 25
TILE = (352, 288)  # one person's tile in people_video: the carphone clip (176x144) upscaled 2x
GAP = 32  # background pixels between tiles


def people_video(path: Path, people: int, seconds: float) -> Path:
    """``people`` copies of the carphone face side by side over a textured background, each copy a
    different moment of the clip (30 frames apart), ``seconds`` long at 25 fps; reused if present."""
    import av
    import cv2
    import numpy as np

    from videogen import carphone_path, write_video

    path = Path(path)
    if path.is_file():
        return path
    with av.open(str(carphone_path())) as src:
        faces = [cv2.resize(f.to_ndarray(format="rgb24"), TILE, interpolation=cv2.INTER_CUBIC)
                 for f in src.decode(video=0)]
    tw, th = TILE
    width, height = people * tw + (people + 1) * GAP, th + 2 * GAP
    width += width % 2
    background = np.random.default_rng(0).integers(40, 90, size=(height, width, 3), dtype=np.uint8)

    def frame(i: int) -> np.ndarray:
        img = background.copy()
        for p in range(people):
            x = GAP + p * (tw + GAP)
            img[GAP:GAP + th, x:x + tw] = faces[(i + 30 * p) % len(faces)]
        return img

    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    write_video(tmp, int(round(seconds * PEOPLE_FPS)), width=width, height=height, fps=PEOPLE_FPS, frame_fn=frame,
                options={"crf": "23", "preset": "ultrafast"})
    os.replace(tmp, path)
    return path


def looped_video(src: Path, dst: Path, copies: int) -> Path:
    """``copies`` copies of ``src`` back to back, by remuxing packets (no re-encoding).

    A 10-minute 720p H.264 file made of ten 1-minute copies has the same resolution, codec and
    group-of-pictures structure as one encoded in one go, in seconds instead of many minutes.
    """
    import av

    dst = Path(dst)
    if dst.is_file():
        return dst
    tmp = dst.with_name(f".{dst.stem}.tmp-{os.getpid()}{dst.suffix}")
    with av.open(str(src)) as probe:
        s = probe.streams.video[0]
        pts = [p.pts for p in probe.demux(s) if p.size]
        step = (max(pts) - min(pts)) + (sorted(pts)[1] - sorted(pts)[0])  # one copy's duration
    with av.open(str(tmp), "w", format="mp4") as out:
        ostream = None
        for c in range(copies):
            with av.open(str(src)) as inp:
                istream = inp.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(istream)
                for packet in inp.demux(istream):
                    if packet.size == 0 or packet.pts is None:
                        continue
                    packet.pts += c * step
                    if packet.dts is not None:
                        packet.dts += c * step
                    packet.stream = ostream
                    out.mux(packet)
    os.replace(tmp, dst)
    return dst


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (10^6 bytes; VmHWM, ru_maxrss without /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def rss_mb() -> float:
    """Current resident set size of this process in MB (10^6 bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:  # pragma: no cover
        pass
    return float("nan")


# ----------------------------------------------------------------------------------------------
# other processes' load (the project machines are shared)
# ----------------------------------------------------------------------------------------------
def _busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``; NaN without it)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:  # pragma: no cover - not Linux
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """Share of the machine's cores that OTHER processes kept busy while the block ran (0..1).

    Machine-wide busy time (``/proc/stat``) minus this process's CPU time, over cores x wall time.
    Other processes' load only ever adds time (barrier waits of the two OpenMP threads included),
    so a measurement with a share near 0 is the one to trust.
    """

    def __enter__(self) -> "ForeignLoad":
        self._t, self._busy, self._own = time.perf_counter(), _busy_seconds(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t
        foreign = (_busy_seconds() - self._busy) - (time.process_time() - self._own)
        self.share = max(0.0, foreign) / ((os.cpu_count() or 1) * wall) if wall > 0 else float("nan")


def wait_until_idle(max_wait_s: float, share: float = 0.1, probe_s: float = 0.5) -> float:
    """Wait (at most ``max_wait_s``) until other processes use less than ``share`` of the cores
    over ``probe_s``; returns the share last seen."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        with ForeignLoad() as load:
            time.sleep(probe_s)
        if load.share < share or time.perf_counter() >= deadline:
            return load.share
