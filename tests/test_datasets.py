"""Dataset adapters on directory trees that mimic each official layout (empty placeholder files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stylefusion.errors import DatasetLayoutError
from stylefusion.research.datasets import build_manifest, main, parse_ratios
from stylefusion.research.manifest import (
    ManifestError, ManifestRecord, counts, read_manifest, split_groups, write_manifest,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ----------------------------------------------------------------------------------------------
# FaceForensics++
# ----------------------------------------------------------------------------------------------
FFPP_SPLITS = {"train": [["000", "003"], ["001", "004"]], "val": [["002", "005"]], "test": [["006", "007"]]}


def make_ffpp(root: Path, comp: str = "c23", methods=("Deepfakes", "FaceSwap")) -> Path:
    ids = sorted({i for pairs in FFPP_SPLITS.values() for pair in pairs for i in pair})
    for i in ids:
        touch(root / "original_sequences" / "youtube" / comp / "videos" / f"{i}.mp4")
    for m in methods:
        for pairs in FFPP_SPLITS.values():
            for a, b in pairs:
                touch(root / "manipulated_sequences" / m / comp / "videos" / f"{a}_{b}.mp4")
                touch(root / "manipulated_sequences" / m / comp / "videos" / f"{b}_{a}.mp4")
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split, pairs in FFPP_SPLITS.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    return root


def test_ffpp_pairs_define_splits(tmp_path):
    records = build_manifest("ffpp", make_ffpp(tmp_path / "ff"))
    by_id = {r.video_id: r for r in records}
    assert len(records) == 8 + 2 * 8  # 8 originals, 2 methods x 4 pairs x 2 directions
    assert by_id["ffpp-c23/original/000"].split == "train" and by_id["ffpp-c23/original/000"].label == 0
    assert by_id["ffpp-c23/original/003"].split == "train"
    assert by_id["ffpp-c23/Deepfakes/005_002"].split == "val"  # b_a belongs to the pair's split
    assert by_id["ffpp-c23/FaceSwap/006_007"].split == "test" and by_id["ffpp-c23/FaceSwap/006_007"].label == 1
    assert {r.method for r in records} == {"original", "Deepfakes", "FaceSwap"}
    assert counts(records) == {"train": {"real": 4, "fake": 8}, "val": {"real": 2, "fake": 4},
                                  "test": {"real": 2, "fake": 4}}
    # Identities never cross splits.
    split_of_id = {}
    for r in records:
        for part in Path(r.path).stem.split("_"):
            assert split_of_id.setdefault(part, r.split) == r.split


def test_ffpp_method_selection_and_compression(tmp_path):
    root = make_ffpp(tmp_path / "ff", comp="c40", methods=("Face2Face",))
    records = build_manifest("ffpp", root, compression="c40", methods=["Face2Face"])
    assert {r.method for r in records} == {"original", "Face2Face"}
    with pytest.raises(DatasetLayoutError, match="FaceForensics\\+\\+ originals"):
        build_manifest("ffpp", root, compression="c23")
    with pytest.raises(DatasetLayoutError, match="NeuralTextures"):
        build_manifest("ffpp", root, compression="c40", methods=["NeuralTextures"])
    with pytest.raises(DatasetLayoutError, match="unknown FaceForensics"):
        build_manifest("ffpp", root, compression="c40", methods=["DeepFaceLab"])


def test_ffpp_broken_layouts(tmp_path):
    root = make_ffpp(tmp_path / "ff")
    (root / "splits" / "val.json").unlink()
    with pytest.raises(DatasetLayoutError, match="val.json not found"):
        build_manifest("ffpp", root)
    root = make_ffpp(tmp_path / "ff2")
    (root / "original_sequences" / "youtube" / "c23" / "videos" / "002.mp4").unlink()
    with pytest.raises(DatasetLayoutError, match="1 videos named by .* missing: .*002.mp4"):
        build_manifest("ffpp", root)
    assert len(build_manifest("ffpp", root, allow_missing=True)) == 23
    root = make_ffpp(tmp_path / "ff3")
    (root / "splits" / "test.json").write_text(json.dumps([["000", "007"]]))  # 000 is also train
    with pytest.raises(DatasetLayoutError, match="000 is also in train.json"):
        build_manifest("ffpp", root)
    with pytest.raises(DatasetLayoutError, match="missing folder"):
        build_manifest("ffpp", tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------
# Celeb-DF v2
# ----------------------------------------------------------------------------------------------
def make_celebdf(root: Path) -> Path:
    for ident in range(6):
        for n in range(2):
            touch(root / "Celeb-real" / f"id{ident}_{n:04d}.mp4")
            touch(root / "Celeb-synthesis" / f"id{ident}_id{(ident + 1) % 6}_{n:04d}.mp4")
    for n in range(4):
        touch(root / "YouTube-real" / f"{n:05d}.mp4")
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n1 YouTube-real/00000.mp4\n")
    return root


def test_celebdf_test_list_and_identity_split(tmp_path):
    records = build_manifest("celebdf", make_celebdf(tmp_path / "cdf"), val_ratio=0.3, seed=1)
    by_id = {r.video_id: r for r in records}
    assert len(records) == 12 + 12 + 4
    # List label 1 = real -> our label 0; listed videos are the test split.
    assert by_id["celebdf/Celeb-real/id0_0000"].split == "test" and by_id["celebdf/Celeb-real/id0_0000"].label == 0
    assert by_id["celebdf/Celeb-synthesis/id0_id1_0000"].label == 1
    assert by_id["celebdf/YouTube-real/00000"].split == "test"
    assert sum(r.split == "test" for r in records) == 3
    assert {r.split for r in records} == {"train", "val", "test"}
    # A person's (non-test) videos stay on one side of train/val.
    side: dict[str, str] = {}
    for r in records:
        stem = Path(r.path).stem
        if r.split != "test" and stem.startswith("id"):
            assert side.setdefault(stem.split("_")[0], r.split) == r.split
    # Seeded: the same seed gives the same manifest, another seed may not.
    assert build_manifest("celebdf", tmp_path / "cdf", val_ratio=0.3, seed=1) == records


def test_celebdf_broken_layouts(tmp_path):
    root = make_celebdf(tmp_path / "cdf")
    (root / "List_of_testing_videos.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="List_of_testing_videos.txt"):
        build_manifest("celebdf", root)
    root = make_celebdf(tmp_path / "cdf2")
    (root / "List_of_testing_videos.txt").write_text("1 Celeb-real/id9_0000.mp4\n")
    with pytest.raises(DatasetLayoutError, match="missing"):
        build_manifest("celebdf", root)
    (root / "List_of_testing_videos.txt").write_text("real Celeb-real/id0_0000.mp4\n")
    with pytest.raises(DatasetLayoutError, match=":1: expected"):
        build_manifest("celebdf", root)
    (root / "List_of_testing_videos.txt").write_text("0 Celeb-real/id0_0000.mp4\n")  # fake label in real folder
    with pytest.raises(DatasetLayoutError, match="labelled fake but lives in Celeb-real"):
        build_manifest("celebdf", root)
    root = make_celebdf(tmp_path / "cdf3")
    for p in (root / "YouTube-real").iterdir():
        p.unlink()
    (root / "YouTube-real").rmdir()
    with pytest.raises(DatasetLayoutError, match="YouTube-real: missing folder"):
        build_manifest("celebdf", root)


# ----------------------------------------------------------------------------------------------
# DFDC
# ----------------------------------------------------------------------------------------------
def make_dfdc(root: Path, parts: int = 2) -> Path:
    for p in range(parts):
        part = root / f"dfdc_train_part_{p}"
        meta = {}
        for n in range(3):
            real = f"r{p}{n}.mp4"
            meta[real] = {"label": "REAL", "split": "train", "original": None}
            touch(part / real)
            for k in range(2):
                fake = f"f{p}{n}{k}.mp4"
                meta[fake] = {"label": "FAKE", "split": "train", "original": real}
                touch(part / fake)
        part.mkdir(parents=True, exist_ok=True)
        (part / "metadata.json").write_text(json.dumps(meta))
    return root


def test_dfdc_parts_and_grouped_val(tmp_path):
    records = build_manifest("dfdc", make_dfdc(tmp_path / "dfdc"), val_ratio=0.34, seed=0)
    assert len(records) == 2 * 9
    assert sum(r.label for r in records) == 12
    assert {r.split for r in records} == {"train", "val"}
    # A fake stays in the split of the original it was made from.
    by_name = {Path(r.path).name: r for r in records}
    for name, r in by_name.items():
        if name.startswith("f"):
            assert r.split == by_name[f"r{name[1:3]}.mp4"].split
    forced = build_manifest("dfdc", tmp_path / "dfdc", force_split="test")
    assert {r.split for r in forced} == {"test"}


def test_dfdc_broken_layouts(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no metadata.json"):
        build_manifest("dfdc", touch(tmp_path / "d" / "x.mp4").parent)
    root = make_dfdc(tmp_path / "dfdc", parts=1)
    meta_file = root / "dfdc_train_part_0" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["r00.mp4"]["label"] = "MAYBE"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match="r00.mp4: label must be FAKE or REAL"):
        build_manifest("dfdc", root)
    meta["r00.mp4"]["label"] = "REAL"
    meta["gone.mp4"] = {"label": "FAKE", "split": "train", "original": "r00.mp4"}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match="gone.mp4"):
        build_manifest("dfdc", root)


# ----------------------------------------------------------------------------------------------
# Generic folders, manifest files, CLI
# ----------------------------------------------------------------------------------------------
def make_folders(root: Path, n: int = 10) -> Path:
    for i in range(n):
        touch(root / "real" / f"r{i}.mp4")
        touch(root / "fake" / ("swap" if i % 2 else "reenact") / f"f{i}.mp4")
    touch(root / "fake" / "notes.txt")
    return root


def test_folders_seeded_stratified_split(tmp_path):
    root = make_folders(tmp_path / "data")
    records = build_manifest("folders", root, ratios=parse_ratios("0.6,0.2,0.2"), seed=3, name="mine")
    assert len(records) == 20 and {r.dataset for r in records} == {"mine"}
    assert counts(records) == {"train": {"real": 6, "fake": 6}, "val": {"real": 2, "fake": 2},
                                  "test": {"real": 2, "fake": 2}}
    assert {r.method for r in records if r.label} == {"swap", "reenact"}
    assert records == build_manifest("folders", root, ratios=parse_ratios("0.6,0.2,0.2"), seed=3, name="mine")
    assert records != build_manifest("folders", root, ratios=parse_ratios("0.6,0.2,0.2"), seed=4, name="mine")


def test_folders_broken_layouts(tmp_path):
    touch(tmp_path / "a" / "real" / "r.mp4")
    with pytest.raises(DatasetLayoutError, match="fake videos"):
        build_manifest("folders", tmp_path / "a")
    touch(tmp_path / "a" / "fake" / "readme.txt")
    with pytest.raises(DatasetLayoutError, match="no video files"):
        build_manifest("folders", tmp_path / "a")
    for bad in ("0.5,0.5", "0.8,0.3,0.1", "a,b,c"):
        with pytest.raises(DatasetLayoutError, match="--ratios"):
            parse_ratios(bad)


def test_split_groups_is_deterministic_and_proportional():
    groups = [f"g{i}" for i in range(100)]
    a = split_groups(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    assert a == split_groups(reversed(groups), {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    sizes = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert sizes == {"train": 70, "val": 15, "test": 15}


def test_counts_of_labels_records_and_cache_metadata():
    import torch

    assert counts([0, 1, 1, 0, 1]) == {"real": 2, "fake": 3}
    assert counts(torch.tensor([1.0, 0.0, 1.0])) == {"real": 1, "fake": 2}  # CachedFeatures.labels
    records = [ManifestRecord(f"v{i}", f"/v{i}.mp4", i % 2, split, "d", "m")
               for i, split in enumerate(["test", "train", "train", "val", "train"])]
    expected = {"train": {"real": 2, "fake": 1}, "val": {"real": 0, "fake": 1}, "test": {"real": 1, "fake": 0}}
    assert counts(records) == expected and list(counts(records)) == ["train", "val", "test"]
    metadata = [{"split": r.split, "label": str(r.label), "video_id": r.video_id} for r in records]
    assert counts(metadata) == expected  # cache entry headers, as CachedFeatures.records holds them


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_round_trip_and_validation(tmp_path, suffix):
    records = build_manifest("folders", make_folders(tmp_path / "data", n=4))
    path = write_manifest(records, tmp_path / f"m{suffix}")
    assert read_manifest(path) == records
    dup = [*records, records[0]]
    with pytest.raises(ManifestError, match="duplicate video_id"):
        write_manifest(dup, tmp_path / f"d{suffix}")
    bad = ManifestRecord("x", "x.mp4", 2, "train", "d", "m")
    with pytest.raises(ManifestError, match="label=2"):
        write_manifest([bad], tmp_path / f"b{suffix}")


def test_manifest_relative_paths_and_malformed(tmp_path):
    (tmp_path / "m.csv").write_text("video_id,path,label,split,dataset,method\nv1,videos/a.mp4,1,test,d,m\n")
    (rec,) = read_manifest(tmp_path / "m.csv")
    assert rec.path == str((tmp_path / "videos" / "a.mp4").resolve())
    (tmp_path / "bad.csv").write_text("video_id,path,label\nv,a.mp4,0\n")
    with pytest.raises(ManifestError, match="lacks columns"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"video_id": "v", "path": "a", "label": "x"}\n')
    with pytest.raises(ManifestError, match="record 1 is malformed"):
        read_manifest(tmp_path / "bad.jsonl")
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "none.csv")


def test_manifest_cli(tmp_path, capsys):
    root = make_ffpp(tmp_path / "ff")
    assert main(["--dataset", "ffpp", "--root", str(root), "--out", str(tmp_path / "m.csv")]) == 0
    assert "24 videos" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "m.csv")) == 24
    assert main(["--dataset", "celebdf", "--root", str(root), "--out", str(tmp_path / "c.csv")]) == 2
    assert "Celeb-real: missing folder" in capsys.readouterr().err
