"""The ``stylefusion`` command: thin subcommands over the library.

Every subcommand explains itself with ``--help``, shows progress on long work, and exits non-zero
with a one-line ``error: ...`` message on bad input (exit 2), or 1 when some files of a batch failed.
Heavy imports happen inside the subcommands so ``stylefusion --help`` answers at once.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from stylefusion import __version__
from stylefusion.errors import StyleFusionError

logger = logging.getLogger("stylefusion")

#: The hub repo the app and the CLI use when no model is named (a placeholder until trained weights
#: are published; see README).
DEFAULT_MODEL = "stylefusion/stylefusion-ffpp"

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".gif", ".3gp", ".ts"}


def default_model() -> str:
    return os.environ.get("STYLEFUSION_MODEL") or DEFAULT_MODEL


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file or nothing: a crash mid-write never leaves half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# faces
# ----------------------------------------------------------------------------------------------
def _add_faces(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="the video file")
    p.add_argument("--out", required=True, help="folder for the crops (PNG) and faces.json")
    p.add_argument("--model", default=None,
                   help="checkpoint folder or hub repo id whose preprocessing to use "
                        "(default: the report's settings: 32 frames, 20%% margin, 256x256)")
    p.add_argument("--frames", type=int, default=None, help="number of frames to sample (default 32)")
    p.add_argument("--device", default="cpu", help="torch device for MTCNN (cpu, cuda, cuda:1, ...)")


def _run_faces(args: argparse.Namespace) -> int:
    import cv2

    from stylefusion.config import StyleFusionConfig
    from stylefusion.faces import FaceCropper
    from stylefusion.video import read_frames

    if args.model:
        from stylefusion.detector import CONFIG_NAME, resolve_checkpoint

        config = StyleFusionConfig.from_json_file(resolve_checkpoint(args.model) / CONFIG_NAME)
    else:
        config = StyleFusionConfig()
    if args.frames is not None:
        config = config.replace(num_frames=args.frames, clip_len=1)
    frames = read_frames(args.video, config.num_frames)
    track = FaceCropper(config, device=args.device)(frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(len(track.crops)):
        name = f"frame_{i:03d}_src{int(track.source_indices[i]):06d}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(track.crops[i], cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - OpenCV failure
            raise StyleFusionError(f"{out / name}: cannot encode PNG")
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, out / name)
        entries.append({
            "file": name, "source_index": int(track.source_indices[i]),
            "timestamp": round(float(track.timestamps[i]), 6),
            "box": [round(float(v), 3) for v in track.boxes[i]],
            "probability": round(float(track.probs[i]), 6), "fallback": bool(track.fallback[i]),
        })
    report = {"video": frames.info.to_dict(), "face_found": int((~track.fallback).sum()),
              "num_frames": len(entries), "face_found_ratio": track.face_found_ratio, "frames": entries}
    atomic_write_text(out / "faces.json", json.dumps(report, indent=2) + "\n")
    print(f"{args.video}: wrote {len(entries)} crops to {out}; face found in "
          f"{report['face_found']} of {len(entries)} frames")
    return 0


# ----------------------------------------------------------------------------------------------
# detect
# ----------------------------------------------------------------------------------------------
def _add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="video files or folders (folders are searched recursively)")
    p.add_argument("--model", default=None,
                   help=f"checkpoint folder or hub repo id (default: $STYLEFUSION_MODEL or {DEFAULT_MODEL})")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", dest="json_out", default=None, help="write all results to this JSON file")
    out.add_argument("--csv", dest="csv_out", default=None, help="write one row per video to this CSV file")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no per-video lines, only the summary")


def collect_videos(paths: Sequence[str]) -> list[Path]:
    """Files as given (whatever their extension) and video files found under folders, sorted."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS))
        else:
            found.append(p)  # missing files are reported per file by detect
    return found


CSV_FIELDS = ["path", "label", "p_fake", "threshold", "face_found_ratio", "num_frames", "error"]


def _run_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stylefusion.detector import StyleFusionDetector

    videos = collect_videos(args.paths)
    if not videos:
        raise StyleFusionError("no video files found in " + ", ".join(args.paths))
    model = args.model or default_model()
    det = StyleFusionDetector.from_pretrained(model, device=args.device)
    if not det.config.trained:
        print(f"note: {model} has an untrained fusion head; results are labelled 'untrained', not verdicts",
              file=sys.stderr)
    results: list[dict[str, Any]] = []
    failed = 0
    bar = tqdm(videos, unit="video", desc="detect", disable=None, file=sys.stderr)
    for video in bar:
        try:
            res = det.detect(video).to_dict()
        except StyleFusionError as exc:
            failed += 1
            res = {"path": str(video), "label": "error", "error": str(exc)}
            tqdm.write(f"error: {exc}", file=sys.stderr)
        except Exception as exc:  # a bug of ours on a strange file must not end the batch
            failed += 1
            logger.debug("unexpected failure on %s", video, exc_info=True)
            reason = f"{video}: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            res = {"path": str(video), "label": "error", "error": reason}
            tqdm.write(f"error: {reason} (please report this; -vv shows details)", file=sys.stderr)
        else:
            if not args.quiet:
                p = "n/a" if res["p_fake"] is None else f"{res['p_fake']:.4f}"
                tqdm.write(f"{video}: {res['label']} (p_fake={p}, threshold={res['threshold']:.3f}, "
                           f"faces {res['face_found_ratio']:.0%})")
        results.append(res)
    if args.json_out:
        doc = {"model": det.identity(), "stylefusion_version": __version__, "results": results}
        atomic_write_text(args.json_out, json.dumps(doc, indent=2) + "\n")
    if args.csv_out:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results:
            writer.writerow({"path": r["path"], "label": r["label"], "p_fake": r.get("p_fake"),
                             "threshold": r.get("threshold"), "face_found_ratio": r.get("face_found_ratio"),
                             "num_frames": len(r.get("frames", [])), "error": r.get("error", "")})
        atomic_write_text(args.csv_out, buf.getvalue())
    print(f"{len(videos) - failed} of {len(videos)} videos analysed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------
# init
# ----------------------------------------------------------------------------------------------
def _add_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=["full", "tiny"], default="full",
                   help="full = the report's network sizes; tiny = few channels, for tests")
    p.add_argument("--out", required=True, help="folder to write config.json and model.safetensors to")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights")


def _run_init(args: argparse.Namespace) -> int:
    from stylefusion.detector import init_checkpoint

    model = init_checkpoint(args.preset, args.out, seed=args.seed)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote a random, UNTRAINED {args.preset} checkpoint ({n:,} parameters) to {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------
# registry: (name, help, add-arguments, run) — research commands live outside the library
# ----------------------------------------------------------------------------------------------
def _lazy(module: str, add: str, run: str) -> tuple[Callable, Callable]:
    def add_fn(p: argparse.ArgumentParser) -> None:
        import importlib

        getattr(importlib.import_module(module), add)(p)

    def run_fn(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), run)(args)

    return add_fn, run_fn


COMMANDS: list[tuple[str, str, Callable, Callable]] = [
    ("faces", "sample frames and write the main face crops (PNG) with a JSON sidecar", _add_faces, _run_faces),
    ("detect", "detect deepfakes in videos or folders; JSON/CSV reports", _add_detect, _run_detect),
    ("init", "write a checkpoint with random weights (marked untrained)", _add_init, _run_init),
    ("convert", "convert upstream pSp and slow_r50 weights into a StyleFusion checkpoint",
     *_lazy("stylefusion.convert", "add_convert_arguments", "run_convert")),
    ("manifest", "list a dataset (FaceForensics++, Celeb-DF, DFDC, real/fake folders) into a manifest",
     *_lazy("stylefusion.research.datasets", "add_manifest_arguments", "run_manifest")),
    ("extract", "extract features of a manifest into the feature cache (resumable, torchrun-sharded)",
     *_lazy("stylefusion.research.extract", "add_extract_arguments", "run_extract")),
    ("train", "train the fusion head on cached features (the report's recipe)",
     *_lazy("stylefusion.research.train", "add_train_arguments", "run_train")),
    ("evaluate", "video-level metrics, tables and figures on cached features",
     *_lazy("stylefusion.research.evaluate", "add_evaluate_arguments", "run_evaluate")),
]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylefusion",
        description="StyleFusion video deepfake detector: content (3D ResNet-50) + style (pSp, StyleGRU) "
                    "features fused by attention. Run 'stylefusion COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"stylefusion {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's arguments are imported (research modules pull in heavy deps).
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, help_text, add, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        p.set_defaults(func=run)
        if name == chosen:
            add(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StyleFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
