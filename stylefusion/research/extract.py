"""``stylefusion extract``: manifest → feature cache, resumable and sharded across processes.

The expensive step of the pipeline (frames → faces → content/style features) runs here once per
video; training and evaluation then read the cache. Design choices:

- **Resumable.** Before any work, every manifest row is checked against the cache (a ``stat`` and
  a header read each): valid matching entries are skipped, entries whose only difference is a
  manifest field (split, label) are relabelled in place, the rest are extracted. A killed job is
  restarted with the same command.
- **Sharded with torchrun, without a process group.** Rank ``r`` of ``W`` (``RANK``/``WORLD_SIZE``,
  set by ``torchrun``, SLURM wrappers or ``accelerate launch``) takes the rows ``i`` with
  ``i % W == r`` of the manifest sorted by ``video_id``. The shards are disjoint and cover the
  manifest, each entry has one writer, and the cache folder is the only meeting point, so ranks
  never wait on each other and a crashed rank costs only its own shard.
- **Failures are data.** A video that cannot be read becomes an invalid entry with its reason and
  the run goes on; ``--retry-failed`` tries those again. A cache write that fails (disk full)
  stops the run: continuing would only fail again.
- **Decoding overlaps compute.** A thread decodes the next video's frames while the current one
  goes through face detection and the networks.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from stylefusion.errors import StyleFusionError
from stylefusion.research._cli import add_threads_argument, torch_threads
from stylefusion.research.cache import FeatureCache, FeatureKey, video_fingerprint
from stylefusion.research.datasets import SPLITS, ManifestRecord, read_manifest

logger = logging.getLogger(__name__)


class ShardError(StyleFusionError):
    """RANK / WORLD_SIZE are set to values that do not describe a shard."""


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
    """Rows ``i % world_size == rank`` of the records sorted by video_id (stable across runs)."""
    ordered = sorted(records, key=lambda r: r.video_id)
    return ordered[rank::world_size]


def default_device(local_rank: int | None = None) -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}" if local_rank is not None else "cuda"
    return "cpu"


def model_reference(ref: str) -> str:
    """A local checkpoint folder as an absolute path (so train finds it from anywhere), else as given."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.is_dir() else ref


def extract(manifest: str | Path | Sequence[ManifestRecord], model: str | Any, cache_dir: str | Path, *,
            device: str | None = None, splits: Sequence[str] | None = None, rank: int | None = None,
            world_size: int | None = None, retry_failed: bool = False, progress: bool = True,
            revision: str | None = None) -> ExtractSummary:
    """Extract this rank's share of a manifest into ``cache_dir``.

    Args:
        manifest: a manifest file or its records.
        model: a checkpoint folder / hub repo id, or a loaded ``StyleFusionDetector``.
        splits: only rows of these splits (the filter is applied before sharding).
        rank, world_size: override ``RANK``/``WORLD_SIZE``.
        retry_failed: extract again videos recorded as failed.
        progress: show a tqdm bar (rank 0 only, so ranks do not scribble over each other).

    Raises:
        stylefusion.research.cache.CacheWriteError: an entry could not be written (the run stops; rerun to resume).
    """
    from stylefusion.detector import StyleFusionDetector

    records = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
    if splits:
        records = [r for r in records if r.split in splits]
    rank, world_size = shard_info(rank, world_size)
    mine = shard(records, rank, world_size)
    summary = ExtractSummary(rank, world_size, len(mine))
    t_start = time.perf_counter()

    if isinstance(model, (str, Path)):
        local_rank = int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None
        ref = model_reference(str(model))
        det = StyleFusionDetector.from_pretrained(ref, revision=revision, device=device or default_device(local_rank))
    else:
        det, ref = model, str(getattr(model, "source", {}).get("name") or "")
    key = FeatureKey.from_model(det, ref)
    cache = FeatureCache(cache_dir)

    todo: list[ManifestRecord] = []
    for rec in mine:  # plan first: cheap (stat + header), and gives the bar an honest total
        action, path, meta = cache.status(rec, key)
        if action == "reuse" and (meta or {}).get("valid") == "0" and retry_failed:
            action = "compute"
        if action == "reuse":
            summary.reused += 1
        elif action == "relabel":
            cache.relabel(rec, path)
            summary.relabelled += 1
        else:
            todo.append(rec)
    logger.info("rank %d/%d: %d of %d videos cached, %d to extract", rank, world_size,
                summary.reused + summary.relabelled, len(mine), len(todo))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="video", desc="extract",
               disable=not progress or rank != 0 or not mine, mininterval=0.5, smoothing=0.1)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        nxt: Future | None = pool.submit(det.read, todo[0].path) if todo else None
        for i, rec in enumerate(todo):
            frames_future, nxt = nxt, (pool.submit(det.read, todo[i + 1].path) if i + 1 < len(todo) else None)
            try:
                fingerprint = video_fingerprint(rec.path)
            except OSError as exc:
                fingerprint = None
                reason = f"cannot read file ({exc.strerror or exc})"
            else:
                reason = ""
            feats = None
            if fingerprint is not None:
                try:
                    frames = frames_future.result()
                    feats = det.features_from_track(det.faces(frames))
                except StyleFusionError as exc:  # VideoReadError and friends: the video's fault
                    reason = getattr(exc, "reason", None) or str(exc)
                except Exception as exc:  # noqa: BLE001 — one odd video must not end a 10-hour run
                    logger.warning("%s: extraction failed", rec.path, exc_info=True)
                    reason = f"{type(exc).__name__}: {exc}"
            else:
                frames_future.cancel()
            if feats is not None:
                cache.write(rec, key, feats, fingerprint)
                summary.extracted += 1
            else:
                logger.warning("%s: recorded as failed (%s)", rec.video_id, reason)
                cache.write_invalid(rec, key, reason, fingerprint)
                summary.extracted += 1
                summary.failed += 1
            bar.update(1)
            bar.set_postfix(failed=summary.failed, refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - t_start
    logger.info(summary.line())
    return summary


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(parser)


def run_extract(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        summary = extract(args.manifest, args.model, args.cache, device=args.device, splits=args.split,
                          retry_failed=args.retry_failed, progress=not args.no_progress, revision=args.revision)
    print(summary.line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefusion.research.extract`` / ``torchrun -m stylefusion.research.extract``."""
    from stylefusion.research._cli import run_standalone

    return run_standalone("extract", add_extract_arguments, run_extract, argv)


if __name__ == "__main__":
    raise SystemExit(main())
