"""``stylefusion extract``: manifest → feature cache, resumable and sharded across processes.

The expensive step of the pipeline (windows → frames → people → content/style features) runs here
once per video; training and evaluation then read the cache. A video's features are what
inference judges: every judged person's segment in each analysed window (the ``max_people``
longest spans, ``StyleFusionDetector.extract_segments``), all stored in the video's one entry with
the window and person of each segment and the video's duration (``train`` sets ``window_s`` from
it; it reads a fake video of several people as a multiple-instance bag).
Design choices:

- **Resumable.** Before any work, every manifest row is checked against the cache (a ``stat`` and
  a header read each): valid matching entries are skipped, entries whose only difference is a
  manifest field (split, label) are relabelled in place, the rest are extracted. A killed job is
  restarted with the same command.
- **Sharded with torchrun, without a process group.** Rank ``r`` of ``W`` (``RANK``/``WORLD_SIZE``,
  set by ``torchrun``, SLURM wrappers or ``accelerate launch``) takes the rows ``i`` with
  ``i % W == r`` of the manifest sorted by ``video_id``. The shards are disjoint and cover the
  manifest, each entry has one writer, and the cache folder is the only meeting point, so ranks
  never wait on each other and a crashed rank costs only its own shard.
- **Failures are data.** A video that cannot be read, or in which nobody is visible long enough
  to judge (no segment), becomes an invalid entry with its reason and the run goes on;
  ``--retry-failed`` tries those again. A cache write that fails (disk full) stops the run:
  continuing would only fail again.
- **The same windows on every machine.** ``--max-windows`` (default :data:`MAX_WINDOWS`, the
  detector's GPU default) is fixed for the run, not the detector's device-dependent default, so
  CPU and GPU ranks of one cache cut long videos alike; it is recorded in each entry.
- **Reading overlaps compute.** A thread fingerprints and scans (demux, no decode) the next video
  while the current one goes through decoding, face tracking and the networks.
- **Self-blended pseudo-fakes** (``--self-blend``, :mod:`stylefusion.research.selfblend`): each
  real train/val video also gets a fake entry ``<video_id>.sbi`` (method ``self-blend``) whose
  features come from its own crops blended with a transformed copy of themselves, made here in
  memory (never a video file), from the same front-end pass as the real entry; the manifest's own
  train/val fakes are left out, so ``train`` learns from real videos only (test rows are kept for
  evaluation). Rows with method ``self-blend`` in a manifest (``stylefusion manifest
  --self-blend``) are made the same way. A pseudo-fake entry's header records its settings, which
  decide its reuse; a video without face landmarks is an invalid entry with the reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from stylefusion.errors import StyleFusionError
from stylefusion.research._cli import add_threads_argument, torch_threads
from stylefusion.research.cache import (NO_SEGMENT_REASON, Action, FeatureCache, FeatureKey, history_summary,
                                       video_fingerprint)
from stylefusion.research.manifest import SPLITS, ManifestRecord, read_manifest

logger = logging.getLogger(__name__)

#: Windows analysed at most per video (the detector's GPU default; research videos rarely reach it).
MAX_WINDOWS = 32


class ShardError(StyleFusionError):
    """RANK / WORLD_SIZE are set to values that do not describe a shard."""


class ExtractError(StyleFusionError):
    """An option of the run is unusable."""


@dataclass
class ExtractSummary:
    """What one rank did."""

    rank: int
    world_size: int
    total: int  # rows in this rank's shard
    extracted: int = 0
    reused: int = 0
    relabelled: int = 0
    failed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.extracted / self.seconds if self.seconds > 0 else 0.0
        return (f"rank {self.rank}/{self.world_size}: {self.total} videos — {self.extracted} extracted "
                f"({self.failed} failed), {self.reused} already cached, {self.relabelled} relabelled; "
                f"{self.seconds:.1f} s ({rate:.2f} videos/s)")


def shard_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's (rank, world size): the arguments, else torchrun's env vars, else (0, 1)."""
    try:
        rank = int(os.environ.get("RANK", 0)) if rank is None else rank
        world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    except ValueError:
        raise ShardError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
                         "must be integers") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ShardError(f"rank {rank} is not in [0, world size {world_size})")
    return rank, world_size


def shard(records: Sequence[ManifestRecord], rank: int, world_size: int) -> list[ManifestRecord]:
    """Rows ``i % world_size == rank`` of the records sorted by video_id (stable across runs); a
    self-blend row goes with its real video (one front-end pass makes both)."""
    from stylefusion.research.selfblend import base_id

    groups: dict[str, list[ManifestRecord]] = {}
    for r in sorted(records, key=lambda r: r.video_id):
        groups.setdefault(base_id(r), []).append(r)
    return [r for i, g in enumerate(sorted(groups)) if i % world_size == rank for r in groups[g]]


def default_device(local_rank: int | None = None) -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}" if local_rank is not None else "cuda"
    return "cpu"


def model_reference(ref: str) -> str:
    """A local checkpoint folder as an absolute path (so train finds it from anywhere), else as given."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.is_dir() else ref


@dataclass
class _Scan:
    """What the reading thread learns about one video before it is extracted."""

    fingerprint: dict[str, str] | None = None
    duration: float | None = None
    num_windows: int | None = None
    error: str = ""  # why the video cannot be extracted ("" when it can be tried)
    history: str = ""  # cache.history_summary: the file's processing history, for train's limits


def _scan(path: str, window_s: float, max_frame_side: int) -> _Scan:
    """Fingerprint, duration and window count of a video (a demux scan), and its processing
    history (bits per pixel, quantiser, signs of a screen recording: a few decoded frames)."""
    from stylefusion.video import VideoReader

    try:
        fingerprint = video_fingerprint(path)
    except OSError as exc:
        return _Scan(error=f"cannot read file ({exc.strerror or exc})")
    try:
        with VideoReader(path, max_frame_side=max_frame_side) as reader:
            duration, n = reader.duration, len(reader.windows(window_s))
    except StyleFusionError as exc:  # VideoReadError: the video's fault, the same reason extraction gives
        return _Scan(fingerprint, error=getattr(exc, "reason", None) or str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a window_s cutting too many windows
        logger.warning("%s: cannot scan the video", path, exc_info=True)
        return _Scan(fingerprint, error=f"{type(exc).__name__}: {exc}")
    try:
        return _Scan(fingerprint, duration, n, history=history_summary(path))
    except Exception:  # noqa: BLE001 - the history is informative: its failure costs only the limits
        logger.warning("%s: cannot measure the processing history", path, exc_info=True)
        return _Scan(fingerprint, duration, n)


def extract(manifest: str | Path | Sequence[ManifestRecord], model: str | Any, cache_dir: str | Path, *,
            device: str | None = None, splits: Sequence[str] | None = None, rank: int | None = None,
            world_size: int | None = None, retry_failed: bool = False, progress: bool = True,
            revision: str | None = None, max_windows: int = MAX_WINDOWS, precision: str = "auto",
            self_blend: bool = False, self_blend_settings: Any = None) -> ExtractSummary:
    """Extract this rank's share of a manifest into ``cache_dir``: per video, every judged
    person's segment in each analysed window (at most ``max_windows``), in one entry.

    Args:
        manifest: a manifest file or its records.
        model: a checkpoint folder / hub repo id, or a loaded ``StyleFusionDetector``.
        splits: only rows of these splits (the filter is applied before sharding).
        rank, world_size: override ``RANK``/``WORLD_SIZE``.
        retry_failed: extract again videos recorded as failed.
        progress: show a tqdm bar (rank 0 only, so ranks do not scribble over each other).
        max_windows: windows analysed at most per video, spread evenly (the same on every device).
        precision: the extractors' ``auto`` / ``fp32`` / ``bf16`` when ``model`` is a reference
            (:mod:`stylefusion.precision`); each entry's header records the one used.
        self_blend: add a self-blended pseudo-fake of every real train/val video and leave out
            the manifest's train/val fakes (train then learns from real videos only).
        self_blend_settings: a :class:`~stylefusion.research.selfblend.SelfBlendSettings` for
            every self-blend row (added, or already in the manifest); None: the defaults.

    Raises:
        stylefusion.research.cache.CacheWriteError: an entry could not be written (the run stops; rerun to resume).
    """
    from stylefusion.detector import StyleFusionDetector

    if not isinstance(max_windows, int) or isinstance(max_windows, bool) or max_windows < 1:
        raise ExtractError(f"--max-windows {max_windows!r} must be a positive integer")
    from stylefusion.research import selfblend as sbi

    records = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
    if self_blend:
        records = sbi.with_self_blends(records)
    if splits:
        records = [r for r in records if r.split in splits]
    blend_settings = None
    if any(r.method == sbi.METHOD for r in records):
        blend_settings = self_blend_settings or sbi.SelfBlendSettings()
    rank, world_size = shard_info(rank, world_size)
    mine = shard(records, rank, world_size)
    summary = ExtractSummary(rank, world_size, len(mine))
    t_start = time.perf_counter()

    if isinstance(model, (str, Path)):
        local_rank = int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None
        ref = model_reference(str(model))
        det = StyleFusionDetector.from_pretrained(ref, revision=revision, device=device or default_device(local_rank),
                                                  precision=precision)
    else:
        det, ref = model, str(getattr(model, "source", {}).get("name") or "")
    key = FeatureKey.from_model(det, ref, max_windows=max_windows)
    blend_key = None if blend_settings is None else replace(key, synthesis=blend_settings.key())
    cache = FeatureCache(cache_dir)

    def key_of(rec: ManifestRecord) -> FeatureKey:
        return blend_key if blend_key is not None and rec.method == sbi.METHOD else key

    todo: list[ManifestRecord] = []
    for rec in mine:  # plan first: cheap (stat + header), and gives the bar an honest total
        plan = cache.plan(rec, key_of(rec), retry_failed=retry_failed)
        if plan.action is Action.REUSE:
            summary.reused += 1
        elif plan.action is Action.RELABEL:
            cache.relabel(rec, plan.path)
            summary.relabelled += 1
        else:
            todo.append(rec)
    logger.info("rank %d/%d: %d of %d videos cached, %d to extract", rank, world_size,
                summary.reused + summary.relabelled, len(mine), len(todo))

    from tqdm.auto import tqdm

    c = det.config
    front = _FrontEnd(det, max_windows, blend_settings) if blend_settings is not None else None
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="video", desc="extract",
               disable=not progress or rank != 0 or not mine, mininterval=0.5, smoothing=0.1)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as pool:
        def scan(i: int) -> Future | None:
            return pool.submit(_scan, todo[i].path, c.window_s, c.max_frame_side) if i < len(todo) else None

        nxt = scan(0)
        for i, rec in enumerate(todo):
            scan_future, nxt = nxt, scan(i + 1)
            info: _Scan = scan_future.result()
            reason = info.error
            segments: list = []
            if not reason:
                try:
                    if front is not None:  # one front-end pass serves a video and its self-blend
                        segments, reason = front.segments(rec)
                    else:
                        segments = det.extract_segments(rec.path, max_windows=max_windows)
                except StyleFusionError as exc:  # VideoReadError and friends: the video's fault
                    reason = getattr(exc, "reason", None) or str(exc)
                except Exception as exc:  # noqa: BLE001 — one odd video must not end a 10-hour run
                    logger.warning("%s: extraction failed", rec.path, exc_info=True)
                    reason = f"{type(exc).__name__}: {exc}"
                else:
                    if not segments and not reason:
                        reason = (f"{NO_SEGMENT_REASON} (nobody is on screen for {c.min_person_s:g} s or more in one "
                                  "shot of any analysed stretch)")
            if reason and rec.method == sbi.METHOD and not reason.startswith("self-blend"):
                reason = f"self-blend: {reason}"
            if segments:
                cache.write(rec, key_of(rec), segments, info.fingerprint, duration=info.duration,
                            num_windows=info.num_windows, history=info.history)
            else:
                logger.warning("%s: recorded as failed (%s)", rec.video_id, reason)
                cache.write_invalid(rec, key_of(rec), reason, info.fingerprint, duration=info.duration,
                                    num_windows=info.num_windows)
                summary.failed += 1
            summary.extracted += 1
            bar.update(1)
            bar.set_postfix(failed=summary.failed, refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - t_start
    logger.info(summary.line())
    return summary


class _FrontEnd:
    """Extraction when self-blends are made: the front end's analysis of the last video is kept,
    so a video and its pseudo-fake (adjacent in the shard) cost one decoding and face-finding
    pass; the pseudo-fake's crops are blended in memory before the networks see them."""

    def __init__(self, det: Any, max_windows: int, settings: Any):
        self.det, self.max_windows, self.settings = det, max_windows, settings
        self._last: tuple[str, Any] | None = None

    def _analysis(self, path: str) -> Any:
        if self._last is None or self._last[0] != path:
            self._last = None
            self._last = (path, self.det.people(path, self.max_windows))  # config.max_people, as detect
        return self._last[1]

    def _features(self, a: Any) -> list:
        det = self.det
        content, style = det._features(a.crops, {})
        return [det._segment_features(a, i, content, style) for i in range(len(a.judged))]

    def segments(self, rec: ManifestRecord) -> tuple[list, str]:
        """(segments, "") or ([], why not) for a real row or a self-blend row."""
        from stylefusion.research import selfblend as sbi

        a = self._analysis(rec.path)
        if rec.method != sbi.METHOD:
            return self._features(a), ""
        if not a.judged:
            return [], f"{sbi.NO_LANDMARKS_REASON}: nobody is judged in this video"
        blended, skipped = sbi.self_blend_analysis(a, self.det.cropper, self.settings, rec.video_id)
        if blended is None:
            return [], f"{sbi.NO_LANDMARKS_REASON}: {'; '.join(skipped)}"
        return self._features(blended), ""


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Extract content and style features of every manifest video into a cache folder (one "
        "safetensors file per video). Resumable: rerun the same command after an interruption and "
        "only missing or changed videos are processed. Sharded: under `torchrun --nproc_per_node=N` "
        "(or any launcher setting RANK/WORLD_SIZE) each process takes every N-th video.")
    parser.add_argument("--manifest", required=True, help="manifest from `stylefusion manifest` (.csv/.jsonl)")
    parser.add_argument("--model", required=True, help="checkpoint folder or hub repo id whose backbones extract")
    parser.add_argument("--revision", help="hub revision of --model")
    parser.add_argument("--cache", required=True, help="cache folder (created if missing)")
    parser.add_argument("--device", help="torch device (default: cuda[:LOCAL_RANK] if available, else cpu)")
    parser.add_argument("--split", nargs="+", choices=SPLITS, help="only these splits (default: all)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="extract again the videos a previous run recorded as failed")
    parser.add_argument("--max-windows", type=int, default=MAX_WINDOWS,
                        help=f"windows of window_s seconds analysed at most per video, spread evenly "
                             f"(default {MAX_WINDOWS}, on every device)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="the extractors' number format (default auto: bf16 on CUDA and on CPUs with native "
                             "bf16, fp32 elsewhere); recorded in each entry's header")
    parser.add_argument("--self-blend", action="store_true",
                        help="train from real videos only: add a self-blended pseudo-fake of every real train/val "
                             "video (made in memory from its face crops, Self-Blended Images) and leave out the "
                             "manifest's train/val fakes")
    parser.add_argument("--self-blend-flicker", action="store_true",
                        help="draw the blend's transform per frame (SBI's per-image recipe) instead of one slowly "
                             "drifting transform per segment")
    parser.add_argument("--self-blend-mask", choices=("hull", "ellipse"), default="hull",
                        help="face mask from the 5 landmarks: extended convex hull (default) or ellipse")
    parser.add_argument("--self-blend-seed", type=int, default=0, help="seed of the self-blend draws (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(parser)


def run_extract(args: argparse.Namespace) -> int:
    from stylefusion.research.selfblend import SelfBlendSettings

    settings = SelfBlendSettings(seed=args.self_blend_seed, flicker=args.self_blend_flicker, mask=args.self_blend_mask)
    with torch_threads(args.threads):
        summary = extract(args.manifest, args.model, args.cache, device=args.device, splits=args.split,
                          retry_failed=args.retry_failed, progress=not args.no_progress, revision=args.revision,
                          max_windows=args.max_windows, precision=args.precision, self_blend=args.self_blend,
                          self_blend_settings=settings)
    print(summary.line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefusion.research.extract`` / ``torchrun -m stylefusion.research.extract``."""
    from stylefusion.research._cli import run_standalone

    return run_standalone("extract", add_extract_arguments, run_extract, argv)


if __name__ == "__main__":
    raise SystemExit(main())
