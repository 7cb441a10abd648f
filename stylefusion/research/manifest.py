"""Manifests: the one list of labelled, split videos that every research step reads.

A manifest is a CSV or JSONL file of records ``video_id, path, label, split, dataset, method`` with
``label`` 0 = real, 1 = fake and ``split`` one of train / val / test. The dataset adapters
(:mod:`stylefusion.research.datasets`) write them; extraction, the feature cache, training and
evaluation read them (or the records copied into cache entries) and never a dataset's own layout.
This module holds the record, its file format, the seeded group split the adapters share and the
one function that counts videos per split and label.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from stylefusion._io import atomic_writer
from stylefusion.errors import DatasetLayoutError

SPLITS = ("train", "val", "test")
LABEL_NAMES = ("real", "fake")  # index = label


class ManifestError(DatasetLayoutError):
    """A manifest file is missing, malformed or inconsistent (bad label, split, duplicate id)."""


@dataclass(frozen=True)
class ManifestRecord:
    """One video of a dataset, as every later step sees it."""

    video_id: str  # unique within a manifest; also names the cache entry
    path: str  # absolute path of the video file
    label: int  # 0 real, 1 fake
    split: str  # train / val / test
    dataset: str  # ffpp / celebdf / dfdc / a folder dataset's name
    method: str  # manipulation method for fakes; the real source for reals ("original", ...)


MANIFEST_FIELDS = tuple(f.name for f in fields(ManifestRecord))


# ----------------------------------------------------------------------------------------------
# Manifest files
# ----------------------------------------------------------------------------------------------
def write_manifest(records: Sequence[ManifestRecord], path: str | Path) -> Path:
    """Write records as CSV (``.csv``) or JSON lines (``.jsonl``/``.json``), atomically.

    Atomic so that a manifest is never half-written when a job reading it starts.
    """
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise ManifestError(f"{path}: manifest must end in .csv or .jsonl")
    _check_records(records, str(path))
    with atomic_writer(path, "w", newline="") as f:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            for r in records:
                writer.writerow(asdict(r))
        else:
            for r in records:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    return path


def read_manifest(path: str | Path) -> list[ManifestRecord]:
    """Read and validate a manifest; relative video paths resolve against the manifest's folder.

    Relative paths are accepted so a hand-written or moved manifest still works; the adapters write
    absolute ones.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from None
    rows: list[dict] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = [k for k in MANIFEST_FIELDS if k not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: manifest lacks columns {missing} (has {reader.fieldnames})")
        rows = list(reader)
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{n}: each line must be a JSON object")
            rows.append(row)
    records = []
    for n, row in enumerate(rows, 1):
        try:
            label = int(row["label"])
            rec = ManifestRecord(video_id=str(row["video_id"]), path=str(row["path"]), label=label,
                                 split=str(row["split"]), dataset=str(row["dataset"]),
                                 method=str(row["method"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: record {n} is malformed ({type(exc).__name__}: {exc})") from None
        p = Path(rec.path)
        if not p.is_absolute():
            rec = replace(rec, path=str((path.parent / p).resolve()))
        records.append(rec)
    _check_records(records, str(path))
    return records


def _check_records(records: Sequence[ManifestRecord], where: str) -> None:
    seen: set[str] = set()
    for r in records:
        if not r.video_id:
            raise ManifestError(f"{where}: a record has an empty video_id ({r.path})")
        if r.video_id in seen:
            raise ManifestError(f"{where}: duplicate video_id {r.video_id!r}")
        seen.add(r.video_id)
        if r.label not in (0, 1):
            raise ManifestError(f"{where}: {r.video_id}: label={r.label!r} must be 0 (real) or 1 (fake)")
        if r.split not in SPLITS:
            raise ManifestError(f"{where}: {r.video_id}: split={r.split!r} must be one of {SPLITS}")


# ----------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------
def counts(labels_or_records: Iterable[Any]) -> dict[str, Any]:
    """Videos per label, or per split and label: for logs, the CLI and a trained checkpoint's config.

    Args:
        labels_or_records: labels (0 real / 1 fake, as ints, floats or a tensor's elements) give
            ``{"real": n, "fake": m}``. Records give ``{"train": {"real": n, "fake": m}, ...}`` with
            the splits in the order of :data:`SPLITS` (any other split after them, sorted): either
            :class:`ManifestRecord` s or the string metadata of cache entries (a mapping with
            ``"split"`` and ``"label"``, the label as ``"0"``/``"1"``).
    """
    per_label = {name: 0 for name in LABEL_NAMES}
    per_split: dict[str, dict[str, int]] = {}
    for item in labels_or_records:
        if isinstance(item, Mapping):
            split, label = str(item["split"]), item["label"]
        elif isinstance(item, ManifestRecord):
            split, label = item.split, item.label
        else:
            split, label = None, item
        name = LABEL_NAMES[1 if int(float(label)) else 0]
        if split is None:
            per_label[name] += 1
        else:
            per_split.setdefault(split, {n: 0 for n in LABEL_NAMES})[name] += 1
    if per_split and any(per_label.values()):
        raise TypeError("counts() takes labels or records, not a mix of both")
    if not per_split:
        return per_label
    order = [s for s in SPLITS if s in per_split] + sorted(set(per_split) - set(SPLITS))
    return {s: per_split[s] for s in order}


# ----------------------------------------------------------------------------------------------
# Seeded group split
# ----------------------------------------------------------------------------------------------
def split_groups(groups: Iterable[str], ratios: dict[str, float], seed: int,
                 sizes: dict[str, int] | None = None) -> dict[str, str]:
    """Assign whole groups to splits so each split holds about its ratio of the *items*.

    Groups are sorted, then shuffled with ``random.Random(seed)`` (the same answer on every machine
    and Python version), and laid end to end; a group goes to the split in whose share of the line
    its midpoint falls. Grouping keeps related videos (one identity, a fake and its source) together.
    """
    keys = sorted(set(groups))
    random.Random(seed).shuffle(keys)
    sizes = sizes or {}
    total = sum(sizes.get(k, 1) for k in keys)
    names = [s for s in SPLITS if ratios.get(s, 0) > 0]
    bounds, acc = [], 0.0
    for s in names:
        acc += ratios[s] / sum(ratios[n] for n in names)
        bounds.append(acc * total)
    out, pos = {}, 0.0
    for k in keys:
        size = sizes.get(k, 1)
        mid = pos + size / 2
        out[k] = next((s for s, b in zip(names, bounds) if mid < b), names[-1])
        pos += size
    return out
