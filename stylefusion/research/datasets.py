"""Dataset adapters: official folder layouts → one manifest of labelled, split videos.

Every later step (extraction, training, evaluation) reads a manifest
(:mod:`stylefusion.research.manifest`), never a dataset's own layout, so the four layouts below are
handled here once. Manifests say ``label`` 0 = real, 1 = fake (the opposite of Celeb-DF's own
testing list, which says 1 = real).

Layouts:

- FaceForensics++ (Rössler et al. 2019): ``original_sequences/youtube/<comp>/videos/<a>.mp4`` and
  ``manipulated_sequences/<Method>/<comp>/videos/<a>_<b>.mp4``; the official ``train.json``,
  ``val.json`` and ``test.json`` list ``[a, b]`` pairs: originals ``a`` and ``b`` and fakes ``a_b``
  and ``b_a`` belong to that split, so no identity crosses splits.
- Celeb-DF v2: ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and
  ``List_of_testing_videos.txt`` (``label relpath``, label 1 = real). Listed videos are the test
  split; the rest is split train/val by a seeded split over *identities* (``id<N>_`` prefixes), so a
  person's real and fake videos never straddle train and val.
- DFDC: part folders each with ``metadata.json`` (``{"x.mp4": {"label": "FAKE"|"REAL",
  "split": ..., "original": ...}}``). The training parts all say ``train``: a seeded fraction of
  them, grouped by original so a fake stays with its source, becomes val.
- Generic ``real/`` and ``fake/`` folders (searched recursively; a subfolder of ``fake/`` names the
  method): a seeded train/val/test split per label with configurable ratios.

A layout that is not what the adapter expects raises :class:`DatasetLayoutError` naming what is
missing; videos a list names but the disk lacks are an error too unless ``allow_missing``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from stylefusion.errors import DatasetLayoutError
from stylefusion.research.manifest import SPLITS, ManifestRecord, counts, split_groups, write_manifest
from stylefusion.video import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FFPP_COMPRESSIONS = ("c0", "c23", "c40")
CELEBDF_FOLDERS = ("Celeb-real", "YouTube-real", "Celeb-synthesis")
DATASETS = ("ffpp", "celebdf", "dfdc", "folders")


def parse_ratios(text: str) -> dict[str, float]:
    """``"0.7,0.15,0.15"`` → ``{"train": 0.7, "val": 0.15, "test": 0.15}``, checked."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise DatasetLayoutError(f"--ratios {text!r}: expected three numbers like 0.7,0.15,0.15") from None
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise DatasetLayoutError(f"--ratios {text!r}: need three non-negative numbers summing to 1 "
                                 "(train,val,test)")
    return dict(zip(SPLITS, values))


# ----------------------------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------------------------
def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: missing folder ({what})")
    return path


def _videos_in(folder: Path, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                  and not p.name.startswith("."))


def _handle_missing(missing: list[str], allow_missing: bool, what: str) -> None:
    if not missing:
        return
    if not allow_missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DatasetLayoutError(f"{len(missing)} videos named by {what} are missing: {shown} "
                                 "(pass --allow-missing to skip them)")
    logger.warning("%d videos named by %s are missing; skipped", len(missing), what)


def ffpp_manifest(root: str | Path, compression: str = "c23", methods: Sequence[str] | None = None,
                  splits_dir: str | Path | None = None, allow_missing: bool = False) -> list[ManifestRecord]:
    """FaceForensics++ at one compression level, split by the official pair lists."""
    root = Path(root)
    if compression not in FFPP_COMPRESSIONS:
        raise DatasetLayoutError(f"compression {compression!r} must be one of {FFPP_COMPRESSIONS}")
    _require_dir(root, "FaceForensics++ root")
    orig_dir = _require_dir(root / "original_sequences" / "youtube" / compression / "videos",
                            "FaceForensics++ originals")
    if methods:
        unknown = [m for m in methods if m not in FFPP_METHODS]
        if unknown:
            raise DatasetLayoutError(f"unknown FaceForensics++ methods {unknown}; choose from {FFPP_METHODS}")
        method_dirs = {m: _require_dir(root / "manipulated_sequences" / m / compression / "videos",
                                       f"FaceForensics++ {m}") for m in methods}
    else:
        method_dirs = {m: root / "manipulated_sequences" / m / compression / "videos" for m in FFPP_METHODS}
        method_dirs = {m: d for m, d in method_dirs.items() if d.is_dir()}
        if not method_dirs:
            raise DatasetLayoutError(
                f"{root / 'manipulated_sequences'}: no method folder with {compression}/videos "
                f"(expected one of {FFPP_METHODS})")

    split_of: dict[str, str] = {}  # video stem ("000" or "000_003") -> split
    candidates = [Path(splits_dir)] if splits_dir else [root / "splits", root]
    for split in SPLITS:
        file = next((d / f"{split}.json" for d in candidates if (d / f"{split}.json").is_file()), None)
        if file is None:
            raise DatasetLayoutError(f"FaceForensics++ split file {split}.json not found in "
                                     f"{' or '.join(str(d) for d in candidates)} (pass --splits-dir)")
        try:
            pairs = json.loads(file.read_text(encoding="utf-8"))
            pairs = [(str(a), str(b)) for a, b in pairs]
        except (OSError, ValueError, TypeError) as exc:
            raise DatasetLayoutError(f"{file}: expected a JSON list of [a, b] id pairs ({exc})") from None
        for a, b in pairs:
            for stem in (a, b, f"{a}_{b}", f"{b}_{a}"):
                if split_of.setdefault(stem, split) != split:
                    raise DatasetLayoutError(f"{file}: {stem} is also in {split_of[stem]}.json")

    records, missing = [], []
    wanted = [("original", 0, orig_dir, sorted({s for s in split_of if "_" not in s}))]
    wanted += [(m, 1, d, sorted(s for s in split_of if "_" in s)) for m, d in method_dirs.items()]
    for method, label, folder, stems in wanted:
        for stem in stems:
            video = folder / f"{stem}.mp4"
            if not video.is_file():
                missing.append(str(video))
                continue
            records.append(ManifestRecord(f"ffpp-{compression}/{method}/{stem}", str(video.resolve()),
                                          label, split_of[stem], "ffpp", method))
    _handle_missing(missing, allow_missing, "the FaceForensics++ split files")
    listed = {Path(r.path).name for r in records}
    unlisted = sum(1 for d in [orig_dir, *method_dirs.values()] for v in _videos_in(d) if v.name not in listed)
    if unlisted:
        logger.warning("%d FaceForensics++ videos are in no official split; left out", unlisted)
    return records


_CELEB_GROUP = re.compile(r"^(id\d+)_")


def celebdf_manifest(root: str | Path, val_ratio: float = 0.1, seed: int = 0,
                     allow_missing: bool = False) -> list[ManifestRecord]:
    """Celeb-DF v2: the official testing list is test; the rest train/val by identity."""
    root = Path(root)
    _require_dir(root, "Celeb-DF v2 root")
    for name in CELEBDF_FOLDERS:
        _require_dir(root / name, "Celeb-DF v2")
    listing = root / "List_of_testing_videos.txt"
    if not listing.is_file():
        raise DatasetLayoutError(f"{listing}: missing (Celeb-DF v2 testing list)")
    test: dict[str, int] = {}
    missing = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetLayoutError(f"{listing}:{n}: expected '<1 real|0 fake> <relpath>', got {line!r}")
        rel = parts[1]
        if not (root / rel).is_file():
            missing.append(str(root / rel))
            continue
        test[rel] = 0 if parts[0] == "1" else 1  # Celeb-DF says 1 = real; we say 0 = real
    _handle_missing(missing, allow_missing, str(listing))

    rest: dict[str, tuple[int, str]] = {}  # relpath -> (label, folder)
    for folder in CELEBDF_FOLDERS:
        label = 1 if folder == "Celeb-synthesis" else 0
        for video in _videos_in(root / folder):
            rel = f"{folder}/{video.name}"
            if rel in test and test[rel] != label:
                raise DatasetLayoutError(f"{listing}: {rel} is labelled {'fake' if test[rel] else 'real'} "
                                         f"but lives in {folder}/")
            if rel not in test:
                rest[rel] = (label, folder)
    if not test and not rest:
        raise DatasetLayoutError(f"{root}: no videos in {', '.join(CELEBDF_FOLDERS)}")

    def group(rel: str) -> str:
        m = _CELEB_GROUP.match(Path(rel).stem)
        return m.group(1) if m else rel

    sizes = Counter(group(rel) for rel in rest)
    assign = split_groups(sizes, {"train": 1 - val_ratio, "val": val_ratio}, seed, sizes)
    records = []
    for rel, label in sorted(test.items()):
        folder = rel.split("/")[0]
        records.append(ManifestRecord(f"celebdf/{Path(rel).with_suffix('')}", str((root / rel).resolve()),
                                      label, "test", "celebdf", folder))
    for rel, (label, folder) in sorted(rest.items()):
        records.append(ManifestRecord(f"celebdf/{Path(rel).with_suffix('')}", str((root / rel).resolve()),
                                      label, assign[group(rel)], "celebdf", folder))
    return records


_DFDC_SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}


def dfdc_manifest(root: str | Path, val_ratio: float = 0.1, seed: int = 0,
                  allow_missing: bool = False) -> list[ManifestRecord]:
    """DFDC: every ``metadata.json`` in the root or its part folders."""
    root = Path(root)
    _require_dir(root, "DFDC root")
    metas = sorted([root / "metadata.json"] if (root / "metadata.json").is_file() else
                   [p for p in root.glob("*/metadata.json") if p.is_file()])
    if not metas:
        raise DatasetLayoutError(f"{root}: no metadata.json in the folder or its part folders (DFDC)")
    entries = []  # (video path, label, split, group)
    missing = []
    for meta in metas:
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetLayoutError(f"{meta}: not readable JSON ({exc})") from None
        if not isinstance(data, dict):
            raise DatasetLayoutError(f"{meta}: expected an object of file name -> record")
        for name, info in sorted(data.items()):
            if not isinstance(info, dict) or str(info.get("label", "")).upper() not in ("FAKE", "REAL"):
                raise DatasetLayoutError(f"{meta}: {name}: label must be FAKE or REAL")
            split = _DFDC_SPLITS.get(str(info.get("split", "train")).lower())
            if split is None:
                raise DatasetLayoutError(f"{meta}: {name}: split={info.get('split')!r} is not train/val/test")
            video = meta.parent / name
            if not video.is_file():
                missing.append(str(video))
                continue
            label = 1 if str(info["label"]).upper() == "FAKE" else 0
            group = str(info.get("original") or name) if label else name
            entries.append((video, label, split, group))
    _handle_missing(missing, allow_missing, "DFDC metadata.json")
    groups = Counter(g for _, _, s, g in entries if s == "train")
    assign = split_groups(groups, {"train": 1 - val_ratio, "val": val_ratio}, seed, groups)
    return [ManifestRecord(f"dfdc/{video.stem}", str(video.resolve()), label,
                           assign[group] if split == "train" else split, "dfdc",
                           "dfdc-fake" if label else "original")
            for video, label, split, group in entries]


def folders_manifest(root: str | Path, ratios: dict[str, float] | None = None, seed: int = 0,
                     name: str = "folders", require_fake: bool = True) -> list[ManifestRecord]:
    """``real/`` and ``fake/`` folders, split per label so every split gets both classes.

    ``require_fake=False`` (``--self-blend``): a corpus of real videos only (no ``fake/``) is
    accepted; its fake class is made from the reals by extraction."""
    root = Path(root)
    _require_dir(root, "dataset root")
    ratios = ratios or {"train": 0.7, "val": 0.15, "test": 0.15}
    records = []
    for label, sub in ((0, "real"), (1, "fake")):
        if label == 1 and not require_fake and not (root / sub).is_dir():
            break
        folder = _require_dir(root / sub, f"{sub} videos")
        videos = _videos_in(folder, recursive=True)
        if not videos:
            raise DatasetLayoutError(f"{folder}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
        rels = [v.relative_to(folder) for v in videos]
        assign = split_groups([str(r) for r in rels], ratios, seed + label)
        for video, rel in zip(videos, rels):
            method = rel.parts[0] if len(rel.parts) > 1 else sub
            records.append(ManifestRecord(f"{name}/{sub}/{rel.with_suffix('').as_posix()}",
                                          str(video.resolve()), label, assign[str(rel)], name, method))
    return records


def build_manifest(dataset: str, root: str | Path, *, compression: str = "c23",
                   methods: Sequence[str] | None = None, splits_dir: str | Path | None = None,
                   val_ratio: float = 0.1, ratios: dict[str, float] | None = None, seed: int = 0,
                   allow_missing: bool = False, name: str | None = None,
                   force_split: str | None = None, real_only: bool = False) -> list[ManifestRecord]:
    """Dispatch to the adapter of ``dataset``; ``force_split`` puts every video in one split
    (e.g. all of DFDC as a cross-dataset test set)."""
    if not 0.0 <= val_ratio < 1.0:
        raise DatasetLayoutError(f"--val-ratio {val_ratio} must be in [0, 1)")
    builders: dict[str, Callable[[], list[ManifestRecord]]] = {
        "ffpp": lambda: ffpp_manifest(root, compression, methods, splits_dir, allow_missing),
        "celebdf": lambda: celebdf_manifest(root, val_ratio, seed, allow_missing),
        "dfdc": lambda: dfdc_manifest(root, val_ratio, seed, allow_missing),
        "folders": lambda: folders_manifest(root, ratios, seed, name or "folders", require_fake=not real_only),
    }
    if dataset not in builders:
        raise DatasetLayoutError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    records = builders[dataset]()
    if not records:
        raise DatasetLayoutError(f"{root}: the {dataset} layout holds no videos")
    if force_split:
        records = [replace(r, split=force_split) for r in records]
    return records


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Read a dataset in its official layout and write one manifest (CSV or "
                          "JSONL: video_id, path, label 0 real / 1 fake, split, dataset, method) "
                          "that extract, train and evaluate read.")
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="layout of --root: ffpp (FaceForensics++), celebdf (Celeb-DF v2), "
                             "dfdc (folders with metadata.json), folders (real/ and fake/)")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--out", required=True, help="manifest to write (.csv or .jsonl)")
    parser.add_argument("--compression", default="c23", choices=FFPP_COMPRESSIONS,
                        help="FaceForensics++ compression level (default c23, the field's standard)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help=f"FaceForensics++ methods to include (default: all present of {', '.join(FFPP_METHODS)})")
    parser.add_argument("--splits-dir", help="FaceForensics++ folder holding train/val/test.json "
                                             "(default: ROOT/splits, then ROOT)")
    parser.add_argument("--val-ratio", type=float, default=0.1,
                        help="celebdf/dfdc: fraction of the non-test videos put in val (default 0.1)")
    parser.add_argument("--ratios", default="0.7,0.15,0.15",
                        help="folders: train,val,test fractions (default 0.7,0.15,0.15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val(/test) split (default 0)")
    parser.add_argument("--name", help="folders: dataset name recorded in the manifest (default 'folders')")
    parser.add_argument("--force-split", choices=SPLITS,
                        help="put every video in this split, e.g. test for a cross-dataset test set")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip, with a warning, videos the official lists name but the disk lacks")
    parser.add_argument("--self-blend", action="store_true",
                        help="real-only training: leave out the train/val fakes and add a self-blend row "
                             "(<video_id>.sbi, label fake, method self-blend) for each train/val real video; "
                             "`stylefusion extract` makes those pseudo-fakes from the real video's face crops")


def run_manifest(args: argparse.Namespace) -> int:
    records = build_manifest(args.dataset, args.root, compression=args.compression, methods=args.methods,
                             splits_dir=args.splits_dir, val_ratio=args.val_ratio,
                             ratios=parse_ratios(args.ratios), seed=args.seed,
                             allow_missing=args.allow_missing, name=args.name,
                             force_split=args.force_split, real_only=getattr(args, "self_blend", False))
    if getattr(args, "self_blend", False):
        from stylefusion.research.selfblend import with_self_blends

        records = with_self_blends(records)
    out = write_manifest(records, args.out)
    print(f"wrote {out}: {len(records)} videos; "
          + "; ".join(f"{s}: {c['real']} real, {c['fake']} fake" for s, c in counts(records).items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefusion.research.datasets`` (the same as ``stylefusion manifest``)."""
    from stylefusion.research._cli import run_standalone

    return run_standalone("manifest", add_manifest_arguments, run_manifest, argv)


if __name__ == "__main__":
    raise SystemExit(main())
