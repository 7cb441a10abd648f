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
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from stylefusion import __version__
from stylefusion._io import atomic_write
from stylefusion.errors import StyleFusionError
from stylefusion.video import VIDEO_EXTENSIONS

logger = logging.getLogger("stylefusion")

def default_model() -> str:
    """The checkpoint used when ``--model`` is not given: ``$STYLEFUSION_MODEL``, else the ``model``
    of the packaged Space manifest (the same rule as the app's; see :mod:`stylefusion.model_ref`)."""
    from stylefusion.model_ref import resolve_model_ref

    return resolve_model_ref()


# ----------------------------------------------------------------------------------------------
# faces
# ----------------------------------------------------------------------------------------------
def _add_faces(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="the video file")
    p.add_argument("--out", required=True, help="folder for the crops (person_N/*.png) and faces.json")
    p.add_argument("--model", default=None,
                   help="checkpoint folder or hub repo id whose preprocessing to use "
                        "(default: the report's settings: 32 frames, 20%% margin, 256x256)")
    p.add_argument("--frames", type=int, default=None, help="number of frames to sample per stretch (default 32)")
    p.add_argument("--device", default="cpu", help="torch device for MTCNN (cpu, cuda, cuda:1, ...)")
    _add_window_options(p)


def _run_faces(args: argparse.Namespace) -> int:
    import cv2

    from stylefusion.config import StyleFusionConfig
    from stylefusion.faces import FaceCropper
    from stylefusion.people import analyse_people

    _positive(args)
    if args.model:
        from stylefusion.checkpoint import read_config, resolve_checkpoint

        config = read_config(resolve_checkpoint(args.model), args.model)[0]
    else:
        config = StyleFusionConfig()
    if args.frames is not None:
        config = config.replace(num_frames=args.frames, clip_len=1)
    max_windows = args.max_windows or (32 if str(args.device).startswith("cuda") else 8)
    analysis = analyse_people(args.video, config, FaceCropper(config, device=args.device), max_windows,
                              args.max_people or config.max_people)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crops_of = {id(seg): track for seg, track in zip(analysis.judged, analysis.crops)}
    people: dict[int, list[dict[str, Any]]] = {}
    written = 0
    for seg in analysis.segments:
        entry = {k: v for k, v in seg.to_dict().items() if k not in ("frames", "label", "p_fake", "person")}
        entry["frames"] = []
        track = crops_of.get(id(seg))
        if track is not None:
            folder = out / f"person_{seg.person}"
            for i in range(len(track.crops)):
                name = f"w{seg.window:03d}_frame_{i:03d}_src{int(track.source_indices[i]):06d}.png"
                ok, buf = cv2.imencode(".png", cv2.cvtColor(track.crops[i], cv2.COLOR_RGB2BGR))
                if not ok:  # pragma: no cover - OpenCV failure
                    raise StyleFusionError(f"{folder / name}: cannot encode PNG")
                atomic_write(folder / name, buf.tobytes(), fsync=False)
                written += 1
                entry["frames"].append({
                    "file": f"{folder.name}/{name}", "source_index": int(track.source_indices[i]),
                    "timestamp": round(float(track.timestamps[i]), 6),
                    "box": [round(float(v), 3) for v in track.boxes[i]],
                    "detection_prob": round(float(track.probs[i]), 6), "fallback": bool(track.fallback[i]),
                })
        people.setdefault(seg.person, []).append(entry)
    report = {
        "video": analysis.info, "face_found_ratio": analysis.face_found_ratio,
        "windows": [{"window": w.index, "start_s": w.start_s, "end_s": w.end_s, "analysed": w.analysed}
                    for w in analysis.windows],
        "people": [{"id": pid, "segments": segs} for pid, segs in sorted(people.items())],
    }
    atomic_write(out / "faces.json", json.dumps(report, indent=2) + "\n")
    judged = len(analysis.judged)
    print(f"{args.video}: wrote {written} crops of {judged} judged segments ({len(people)} people) to {out}")
    return 0


# ----------------------------------------------------------------------------------------------
# detect
# ----------------------------------------------------------------------------------------------
def _add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="video files or folders (folders are searched recursively)")
    p.add_argument("--model", default=None,
                   help="checkpoint folder or hub repo id (default: $STYLEFUSION_MODEL, else the model "
                        "named in the packaged Space.yaml)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", dest="json_out", default=None, help="write all results to this JSON file")
    out.add_argument("--csv", dest="csv_out", default=None,
                     help="write one row per segment (person x stretch) to this CSV file")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="number format of the feature extractors: fp32 (exact), bf16, or auto (default: bf16 "
                        "on CUDA and on CPUs with native bf16, AVX512-BF16 or AMX; fp32 elsewhere)")
    _add_window_options(p)
    p.add_argument("--explain", metavar="DIR", default=None,
                   help="write the evidence of each video to DIR/<video name>/: evidence.json (every judged "
                        "segment's per-frame and per-clip contributions) and heatmaps of the most contributing "
                        "frames drawn over their crops (PNG). Trained checkpoints only; about 30 s a frame with "
                        "the full preset on 2 CPU cores")
    p.add_argument("--explain-frames", type=int, default=4, help="frames given heatmaps per explained segment (default 4)")
    p.add_argument("--explain-segments", choices=["deciding", "people", "all"], default="deciding",
                   help="which segments get heatmaps: the one the video's answer comes from (default), each "
                        "person's most suspicious one, or all")
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


#: One row per segment (person x window), with the video's label on each row; a video with no
#: segment (no face, or an error) gets one row with the segment columns empty.
CSV_FIELDS = ["path", "label", "p_fake", "threshold", "face_found_ratio", "person", "window", "shot", "start_s",
              "end_s", "judged", "segment_label", "segment_p_fake", "distinct_frames", "ood_score", "out_of_domain",
              "quality_reasons", "history_reasons", "provenance", "provenance_validation", "provenance_source",
              "bpp", "mean_qp", "recapture_signs", "error"]


def _add_window_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-windows", type=int, default=None,
                   help="stretches analysed at most, spread evenly over a longer video (default: 8 on a "
                        "CPU, 32 on a GPU); each stretch is at most the checkpoint's window_s seconds")
    p.add_argument("--max-people", type=int, default=None,
                   help="people judged at most per stretch, the most present ones (default: the checkpoint's "
                        "max_people, 4; the head was trained and calibrated on that many); the others are listed")


def _positive(args: argparse.Namespace) -> None:
    for name in ("max_windows", "max_people"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise StyleFusionError(f"--{name.replace('_', '-')} {value} must be >= 1")


def verdict_line(res: dict[str, Any]) -> str:
    """One line per video: the answer naming who and when, the numbers behind it and how they were
    obtained (:func:`stylefusion.decision.record_facts`), and how many people were judged."""
    from stylefusion.decision import record_facts

    people = res.get("people", [])
    judged = sum(1 for person in people if any(s["judged"] for s in person["segments"]))
    windows = [t for t in res.get("timeline", []) if t["analysed"]]
    facts = record_facts(res["decision"]) if res.get("decision") and res["label"] != "untrained" else []
    if res["label"] in ("untrained", "no_face"):  # no number of a segment to show
        facts = [f for f in facts if f.startswith("cannot judge")]
    coverage = (f"{judged} of {len(people)} people judged in {len(windows)} of {len(res.get('timeline', []))} "
                "stretches")
    beside = []
    prov = res.get("provenance")
    if prov:  # what the file says about itself, beside the verdict (never changing it)
        beside.append(prov["summary"])
        beside += [w for w in prov.get("words", []) if prov["status"] not in ("absent", "not_checked")]
    history = res.get("history") or {}
    if history.get("bpp") is not None or history.get("recapture_signs"):
        signs = ", ".join(history.get("recapture_signs") or []) or "none"
        beside.append(f"history: {history.get('codec') or '?'} at {history['bpp'] if history.get('bpp') is not None else '?'}"
                      f" bits per pixel, screen-recording signs: {signs}")
    return f"{res['path']}: {res['message']} [{'; '.join([*facts, coverage, *beside])}]"


def csv_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The CSV rows of one video's result (or error record)."""
    prov, history = res.get("provenance") or {}, res.get("history") or {}
    base = {"path": res["path"], "label": res["label"], "p_fake": res.get("p_fake"),
            "threshold": res.get("threshold"), "face_found_ratio": res.get("face_found_ratio"),
            "history_reasons": " ".join(history.get("reasons") or []), "provenance": prov.get("status"),
            "provenance_validation": prov.get("validation"), "provenance_source": prov.get("source"),
            "bpp": history.get("bpp"), "mean_qp": history.get("mean_qp"),
            "recapture_signs": " ".join(history.get("recapture_signs") or []), "error": res.get("error", "")}
    rows = []
    for person in res.get("people", []):
        for s in person["segments"]:
            d = s.get("decision") or {}
            rows.append({**base, "person": person["id"], "window": s["window"], "shot": s.get("shot"),
                         "start_s": s["start_s"],
                         "end_s": s["end_s"], "judged": s["judged"], "segment_label": s["label"],
                         "segment_p_fake": s["p_fake"], "distinct_frames": s["distinct_frames"],
                         "ood_score": d.get("ood_score"), "out_of_domain": d.get("out_of_domain"),
                         "quality_reasons": " ".join(d.get("quality_reasons") or [])})
    return sorted(rows, key=lambda r: (r["window"], r["person"])) or [base]


def _run_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stylefusion.results import SCHEMA_VERSION

    _positive(args)
    videos = collect_videos(args.paths)
    if not videos:
        raise StyleFusionError("no video files found in " + ", ".join(args.paths))
    if args.explain_frames < 1:
        raise StyleFusionError(f"--explain-frames {args.explain_frames} must be >= 1")
    if args.explain and Path(args.explain).exists() and not Path(args.explain).is_dir():
        raise StyleFusionError(f"--explain {args.explain} is a file: give a folder for the evidence")
    model = args.model or default_model()
    det = _load_detector(model, default=not args.model, device=args.device, precision=args.precision)
    if not det.config.trained:
        if args.explain:
            from stylefusion.evidence import UNTRAINED_REASON

            raise StyleFusionError(f"--explain: {model}: {UNTRAINED_REASON}")
        print(f"note: {model} has an untrained fusion head; results are labelled 'untrained', not verdicts",
              file=sys.stderr)
    evidence_dirs: set[str] = set()
    results: list[dict[str, Any]] = []
    failed = 0
    stretches, seconds = 0, 0.0
    bar = tqdm(videos, unit="video", desc="detect", disable=None, file=sys.stderr)
    for video in bar:
        try:
            with _VideoProgress(video, position=1) as progress:
                result = det.detect(video, max_windows=args.max_windows, max_people=args.max_people,
                                    return_crops=bool(args.explain), progress=progress)
            stretches += sum(1 for t in result.timeline if t.analysed)
            seconds += progress.elapsed
            if args.explain:
                _explain(det, result, args, evidence_dirs)
            res = result.to_dict()
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
                tqdm.write(verdict_line(res))
        results.append(res)
    if args.json_out:
        doc = {"schema_version": SCHEMA_VERSION, "model": det.identity(), "stylefusion_version": __version__,
               "results": results}
        atomic_write(args.json_out, json.dumps(doc, indent=2) + "\n")
    if args.csv_out:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, restval="")
        writer.writeheader()
        for r in results:
            writer.writerows(csv_rows(r))
        atomic_write(args.csv_out, buf.getvalue())
    print(f"{len(videos) - failed} of {len(videos)} videos analysed, {failed} failed"
          + (f"; {stretches} stretch{'es' if stretches != 1 else ''} in {seconds:.1f} s, "
             f"{seconds / stretches:.1f} s per stretch" if stretches else ""),
          file=sys.stderr)
    return 1 if failed else 0


def _load_detector(model: str, *, default: bool, **options: Any) -> Any:
    """The detector of ``model``; when it cannot be loaded, one line saying why in the app's words
    (:mod:`stylefusion.app.missing`: a hub id not published, not reachable, offline) and what to do."""
    from stylefusion.detector import StyleFusionDetector
    from stylefusion.errors import CheckpointError

    try:
        return StyleFusionDetector.from_pretrained(model, **options)
    except CheckpointError as exc:
        from stylefusion.app.missing import cli_error, hub_reason

        if default or hub_reason(model, str(exc)):
            raise StyleFusionError(cli_error(model, str(exc), default=default)) from None
        raise


class _VideoProgress:
    """A bar within one video, over the detector's stages (sampling, faces, features, verdict):
    ``detect(..., progress=bar)``. Shows the stage and the fraction done; removed when the video ends."""

    STAGES = {"sampling": "reading frames", "faces": "finding faces", "features": "running the networks",
              "verdict": "deciding"}

    def __init__(self, video: Path, position: int = 1) -> None:
        self.video = video
        self.position = position
        self.elapsed = 0.0

    def __enter__(self) -> "_VideoProgress":
        import time

        from tqdm import tqdm

        self._start = time.perf_counter()
        self.bar = tqdm(total=100, unit="%", desc=self.video.name, leave=False, disable=None, file=sys.stderr,
                        position=self.position, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        return self

    def __call__(self, stage: str, fraction: float) -> None:
        done = round(100 * min(max(float(fraction), 0.0), 1.0))
        self.bar.set_description_str(f"{self.video.name} ({self.STAGES.get(stage, stage)})", refresh=False)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        else:
            self.bar.refresh()

    def __exit__(self, *exc: Any) -> None:
        import time

        self.elapsed = time.perf_counter() - self._start
        self.bar.close()


def _explain(det: Any, result: Any, args: argparse.Namespace, used: set[str]) -> None:
    """Heatmaps of the chosen segments, then evidence.json and the overlays in a folder per video."""
    from tqdm import tqdm

    from stylefusion.evidence import write_evidence

    name = Path(result.path).stem or "video"
    folder, n = name, 1
    while folder in used:  # two videos of the same name (from different folders)
        n += 1
        folder = f"{name}_{n}"
    used.add(folder)
    with tqdm(total=0, unit="frame", desc=f"evidence {Path(result.path).name}", disable=None, file=sys.stderr,
              leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        det.explain(result, args.explain_segments, max_frames=args.explain_frames, progress=progress)
    write_evidence(result, Path(args.explain) / folder)


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
# card, push, space (publishing; stylefusion.hub reads checkpoints as files, without torch)
# ----------------------------------------------------------------------------------------------
def _add_card(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--out", default=None,
                   help="folder to write README.md into (the checkpoint folder itself refreshes its card); "
                        "default: print the card to stdout")
    p.add_argument("--repo-id", default=None, help="the hub repo the card will live in (named in its usage examples)")


def _run_card(args: argparse.Namespace) -> int:
    from stylefusion import hub

    if args.out:
        path = hub.write_model_card(args.model, args.out, repo_id=args.repo_id)
        print(f"wrote {path}")
    else:
        from stylefusion.card import render_model_card

        sys.stdout.write(render_model_card(hub.load_checkpoint_config(args.model), repo_id=args.repo_id))
    return 0


def _add_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--repo-id", required=True, help="model repo on the Hugging Face Hub, ORG/NAME (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send nothing, need no token")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")


def _run_push(args: argparse.Namespace) -> int:
    from stylefusion.hub import push_checkpoint

    names = push_checkpoint(args.model, args.repo_id, private=args.private, dry_run=args.dry_run,
                            revision=args.revision)
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(names)} files to https://huggingface.co/{args.repo_id}:")
    for name in names:
        print(f"  {name}")
    return 0


def _add_space(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder to write the Space into (README.md, app.py, requirements.txt)")
    p.add_argument("--model", default=None,
                   help="hub repo id or local checkpoint folder (copied into OUT/model/) the Space serves "
                        "(default: the model named in Space.yaml)")
    p.add_argument("--manifest", default=None,
                   help="Space manifest to use (default: the Space.yaml shipped with the package)")


def _run_space(args: argparse.Namespace) -> int:
    from stylefusion.hub import write_space

    paths = write_space(args.out, model=args.model, manifest=args.manifest)
    out = Path(args.out)
    print(f"wrote a Gradio Space to {out}: " + ", ".join(str(p.relative_to(out)) for p in paths))
    print(f"push it with: hf upload ORG/NAME {out} --repo-type space")
    return 0


# ----------------------------------------------------------------------------------------------
# watch (a live stream, a webcam, standard input)
# ----------------------------------------------------------------------------------------------
def _add_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a URL FFmpeg opens (rtsp://, rtmp://, http(s):// incl. HLS .m3u8, tcp://, "
                                  "udp://), a webcam (/dev/video0; with --format avfoundation a device name such "
                                  "as 0), - for a stream on standard input, or a file")
    p.add_argument("--model", default=None,
                   help="checkpoint folder or hub repo id (default: $STYLEFUSION_MODEL, else the model "
                        "named in the packaged Space.yaml)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="number format of the feature extractors (as for detect)")
    p.add_argument("--window", type=float, default=None,
                   help="seconds per window (default: the checkpoint's window_s, at most 10)")
    p.add_argument("--hop", type=float, default=None,
                   help="seconds from one window's start to the next (default: the window; less: overlapping)")
    p.add_argument("--max-lag", type=float, default=10.0,
                   help="skip a window whose turn comes more than this many seconds behind the stream "
                        "(default 10)")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to wait for the source to answer, at the start and when it stalls (default 10)")
    p.add_argument("--max-people", type=int, default=None,
                   help="people judged at most per window (default: the checkpoint's max_people)")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="treat the source as live: skip windows when the networks fall behind (a file is "
                        "read at its own pace). Default: on for URLs, devices, standard input and --follow; "
                        "off for a file, whose every window is judged")
    p.add_argument("--format", dest="fmt", default=None,
                   help="force the input format (v4l2, avfoundation, dshow, mpegts, ...)")
    p.add_argument("--follow", action="store_true",
                   help="a file still being written: read on as it grows (MPEG-TS, Matroska or fragmented "
                        "MP4), until nothing new comes for --connect-timeout seconds")
    p.add_argument("--quiet", action="store_true", help="no human-readable lines on standard error but the summary")


def _run_watch(args: argparse.Namespace) -> int:
    for name in ("window", "hop", "connect_timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise StyleFusionError(f"--{name.replace('_', '-')} {value} must be > 0")
    if args.max_lag < 0:
        raise StyleFusionError(f"--max-lag {args.max_lag} must be >= 0")
    _positive(args)
    model = args.model or default_model()
    det = _load_detector(model, default=not args.model, device=args.device, precision=args.precision)
    if not det.config.trained:
        print(f"note: {model} has an untrained fusion head; people are found and followed, but labelled "
              "'untrained', not judged", file=sys.stderr)
    records = det.watch(args.source, window_s=args.window, hop_s=args.hop, max_lag_s=args.max_lag,
                        connect_timeout=args.connect_timeout, realtime=args.realtime, max_people=args.max_people,
                        fmt=args.fmt, follow=args.follow)
    ended = thrown = None
    while True:
        try:
            record, thrown = (thrown if thrown is not None else next(records)), None
            print(json.dumps(record.to_dict()), flush=True)
            if record.kind == "ended":
                ended = record
            elif not args.quiet:
                print(record.line(), file=sys.stderr, flush=True)
        except StopIteration:
            break
        except KeyboardInterrupt:  # Ctrl-C while printing: the stream stops with its summary
            try:
                thrown = records.throw(KeyboardInterrupt())
            except StopIteration:
                break
    if ended is not None:
        print(ended.line(), file=sys.stderr, flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# serve (the web app; needs the `app` extra)
# ----------------------------------------------------------------------------------------------
#: What the web app needs beyond the library, as (module, package) pairs.
APP_MODULES = (("gradio", "gradio"), ("plotly", "plotly"), ("yaml", "pyyaml"))


def _add_serve(p: argparse.ArgumentParser) -> None:
    from stylefusion.app.missing import add_serve_arguments  # gradio-free: --help works without the app extra

    add_serve_arguments(p)


def _run_serve(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [pkg for module, pkg in APP_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        raise StyleFusionError(f"the web app needs {', '.join(missing)}, which are not installed: "
                               'pip install "stylefusion[app]"')
    # The app logs each analysis at INFO, with times (the load test reads them).
    logging.basicConfig(level=logging.DEBUG if args.verbose >= 2 else logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from stylefusion.app import serve

    serve(args.model, host=args.host, port=args.port, share=args.share,
          demo_fallback=False if args.no_demo else None, precision=args.precision,
          live_window_s=args.live_window)
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
    ("faces", "find every person in every stretch and write their face crops (PNG, person_N/) with a "
     "JSON sidecar", _add_faces, _run_faces),
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
    ("card", "render a checkpoint's model card (README.md) from its config.json", _add_card, _run_card),
    ("push", "upload a checkpoint (model.safetensors, config.json, its card) to the Hugging Face Hub",
     _add_push, _run_push),
    ("space", "write a folder ready to push as a Gradio Space (README header from Space.yaml, app.py, "
              "requirements.txt)", _add_space, _run_space),
    ("serve", "serve the web app (upload a video, see the verdict, crops and plots)", _add_serve, _run_serve),
    ("watch", "watch a live stream, a webcam or standard input and answer per person as each window completes "
              "(JSON lines on standard output)", _add_watch, _run_watch),
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
