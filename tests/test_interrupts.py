"""Interrupted research jobs: kill -9 during `stylefusion extract` and `stylefusion train`, and a disk
that fills up during cache writes.

- extract: killed with SIGKILL at seeded random moments (at least 10 kills that hit a running
  job), then rerun: the cache must equal an uninterrupted run's (same tensors, same entries,
  failures recorded the same way), with no corrupt entry after any kill and no temporary file left.
- train: killed at random moments, then rerun: the output folder holds a loadable checkpoint, or
  none (no file / refused with a CheckpointError), never one that loads wrong.
- disk full: the cache write raises ENOSPC partway through an entry: a clear CacheWriteError (exit
  2 and one line from the CLI), no partial entry, earlier entries intact, and a rerun completes.

To afford many kills on 2 cores, the jobs are forked from a "zygote" process that has already
imported stylefusion, torch and friends (startup would otherwise dominate every run); each forked
child runs exactly ``stylefusion.cli.main([...])``, the console script's code.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import hostile
import stylefusion.research.extract  # noqa: F401 - the jobs below run it; an ImportError fails here
import stylefusion.research.train  # noqa: F401
from stylefusion.research import cache as cache_mod
from stylefusion.research.cache import CacheCorruptionWarning, FeatureCache, read_header
from stylefusion.research.manifest import ManifestRecord, write_manifest
from videogen import write_video

REPO = Path(__file__).resolve().parents[1]
SEED = 8
MIN_EXTRACT_KILLS = 10
TRAIN_KILLS = 4

_ZYGOTE = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
import stylefusion.cli, stylefusion.detector, stylefusion.faces, facenet_pytorch
import stylefusion.research.extract, stylefusion.research.train, stylefusion.research.cache
import torch.utils.tensorboard  # what train imports, so children start at once
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if "run" in cmd:
        pid = os.fork()
        if pid == 0:
            fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1); os.dup2(fd, 2)
            try:
                code = stylefusion.cli.main(cmd["run"])
            except BaseException:
                import traceback; traceback.print_exc(); code = 99
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(int(code or 0))
        print(json.dumps({"pid": pid}), flush=True)
    elif "wait" in cmd:
        _, status = os.waitpid(cmd["wait"], 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"status": code}), flush=True)
"""


class Zygote:
    """A pre-imported Python that forks `stylefusion.cli.main(argv)` children on request."""

    def __init__(self, log_dir: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.log_dir = log_dir
        self.n = 0
        assert json.loads(self.proc.stdout.readline()).get("ready")

    def _ask(self, cmd: dict) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, argv: list[str]) -> tuple[int, Path]:
        self.n += 1
        log = self.log_dir / f"run-{self.n:03d}.log"
        return self._ask({"run": argv, "log": str(log)})["pid"], log

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["status"]

    def run(self, argv: list[str]) -> tuple[int, float, Path]:
        t0 = time.monotonic()
        pid, log = self.start(argv)
        code = self.wait(pid)
        return code, time.monotonic() - t0, log

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote_logs"))
    yield z
    z.close()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """The fast checkpoint (8 frames per window), judging face-less windows on centre crops
    (``min_person_s=0``: the barcode videos have no face)."""
    from stylefusion.detector import StyleFusionDetector

    out = tmp_path_factory.mktemp("interrupt_ckpt")
    hostile.fast_checkpoint(out)
    model = StyleFusionDetector.from_pretrained(out)
    model.config = model.config.replace(min_person_s=0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """6 tiny videos (train 2+2, val 1+1) and one broken file (an invalid entry)."""
    folder = tmp_path_factory.mktemp("interrupt_videos")
    records = []
    plan = [("train", 0)] * 2 + [("train", 1)] * 2 + [("val", 0), ("val", 1)]
    for i, (split, label) in enumerate(plan):
        path = write_video(folder / f"v{i:02d}.mp4", 12 + 3 * i, width=64, height=64)
        records.append(ManifestRecord(f"vid/{i:02d}", str(path), label, split, "synthetic",
                                      "original" if label == 0 else "noise"))
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(3000))
    records.append(ManifestRecord("vid/broken", str(broken), 1, "train", "synthetic", "noise"))
    return write_manifest(records, folder / "manifest.csv")


def _extract_argv(manifest: Path, ckpt: Path, cache: Path) -> list[str]:
    return ["extract", "--manifest", str(manifest), "--model", str(ckpt), "--cache", str(cache), "--no-progress"]


def _snapshot(cache: Path) -> dict[str, dict]:
    """Every entry: metadata (minus the write time) and tensors; fails on any unreadable entry."""
    out = {}
    store = FeatureCache(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        for path in store.files():
            meta = read_header(path)
            assert meta is not None, f"corrupt cache entry {path}"
            entry = store.read(path)
            assert entry is not None, f"unreadable cache entry {path}"
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            out[str(path.relative_to(cache))] = {"meta": {k: v for k, v in meta.items() if k != "created"},
                                                 "tensors": tensors}
    return out


def _temp_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob(".*") if p.is_file()]


def _assert_same(got: dict, ref: dict) -> None:
    assert sorted(got) == sorted(ref), "entries differ from the uninterrupted run"
    for name in ref:
        a, b = got[name], ref[name]
        assert a["meta"] == b["meta"], name
        assert a["tensors"].keys() == b["tensors"].keys(), name
        for k in b["tensors"]:
            assert torch.equal(a["tensors"][k], b["tensors"][k]), (name, k)


@pytest.fixture(scope="module")
def reference(zygote, manifest, ckpt, tmp_path_factory):
    cache = tmp_path_factory.mktemp("ref_cache")
    code, seconds, log = zygote.run(_extract_argv(manifest, ckpt, cache))
    assert code == 0, log.read_text()
    snap = _snapshot(cache)
    assert len(snap) == 7 and sum(e["meta"]["valid"] == "0" for e in snap.values()) == 1
    assert all(e["meta"]["segments"] == "1" for e in snap.values() if e["meta"]["valid"] == "1")
    return cache, snap, seconds


def test_kill_extract_at_random_moments_then_resume(zygote, manifest, ckpt, reference, tmp_path):
    ref_cache, ref, full_seconds = reference
    cache = tmp_path / "cache"
    rng = random.Random(SEED)
    kills, rounds, removed, temps_seen, entries_after_kill = 0, 0, 0, 0, []
    while kills < MIN_EXTRACT_KILLS and rounds < 40:
        rounds += 1
        files = FeatureCache(cache).files()
        if len(files) == len(ref):  # all done: take some entries away so the next run has work
            gone = rng.sample(files, k=rng.randint(3, len(files)))
            for f in gone:
                f.unlink()
            removed += len(gone)
        delay = rng.uniform(0.05, 1.0) * full_seconds
        pid, log = zygote.start(_extract_argv(manifest, ckpt, cache))
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = zygote.wait(pid)
        if code == -signal.SIGKILL:
            kills += 1
        else:
            assert code == 0, log.read_text()[-3000:]
        snap = _snapshot(cache)  # no corrupt entry after any kill
        for name, entry in snap.items():  # every entry present is exactly the reference's
            _assert_same({name: entry}, {name: ref[name]})
        entries_after_kill.append(len(snap))
        temps_seen += len(_temp_files(cache))
    assert kills >= MIN_EXTRACT_KILLS, f"only {kills} kills hit a running job in {rounds} rounds"
    code, _, log = zygote.run(_extract_argv(manifest, ckpt, cache))
    assert code == 0, log.read_text()[-3000:]
    assert "0 extracted" not in log.read_text() or len(FeatureCache(cache).files()) == len(ref)
    final = _snapshot(cache)
    _assert_same(final, ref)
    assert _temp_files(cache) == [], "temporary files left behind"
    print(f"\nextract: {kills} kills in {rounds} rounds (entries after each kill: {entries_after_kill}; "
          f"{removed} entries removed to make work; {temps_seen} temporary files seen after kills); "
          f"final cache = uninterrupted run ({len(final)} entries, tensors equal)")


def test_kill_train_then_rerun(zygote, reference, ckpt, tmp_path):
    from stylefusion import StyleFusionDetector
    from stylefusion.errors import CheckpointError

    ref_cache, _, _ = reference
    out = tmp_path / "trained"
    argv = ["train", "--cache", str(ref_cache), "--out", str(out), "--epochs", "15", "--patience", "100",
            "--model", str(ckpt), "--seed", "0"]
    code, full_seconds, log = zygote.run(argv + ["--out", str(tmp_path / "timing")])
    assert code == 0, log.read_text()[-3000:]
    rng = random.Random(SEED + 1)
    states = []
    for i in range(TRAIN_KILLS):
        if i == TRAIN_KILLS // 2:  # the later kills interrupt a run that overwrites a finished checkpoint
            code, _, log = zygote.run(argv)
            assert code == 0, log.read_text()[-3000:]
            states.append("completed run")
        pid, log = zygote.start(argv)
        time.sleep(rng.uniform(0.3, 1.1) * full_seconds)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = zygote.wait(pid)
        assert code in (0, -signal.SIGKILL), log.read_text()[-3000:]
        try:
            model = StyleFusionDetector.from_pretrained(out)
        except CheckpointError as exc:  # nothing there yet, or refused as incomplete: "none"
            states.append(f"none ({str(exc)[-60:]})")
        else:
            assert model.config.trained and model.config.training.epochs_run >= 1
            states.append("loadable")
    code, _, log = zygote.run(argv)
    assert code == 0, log.read_text()[-3000:]
    model = StyleFusionDetector.from_pretrained(out)
    assert model.config.trained
    print(f"\ntrain: {TRAIN_KILLS} kills (full run {full_seconds:.1f} s); after each: {states}; rerun: loadable")


class _FullDisk:
    """``open`` for the cache module: the n-th entry write fills the disk halfway through."""

    def __init__(self, fail_at: int):
        self.fail_at, self.count = fail_at, 0

    def __call__(self, file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        if "w" not in mode:
            return f
        self.count += 1
        if self.count < self.fail_at:
            return f
        real_write = f.write

        class Half:
            def __getattr__(self, name):
                return getattr(f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()
                return False

            def write(self, data):
                real_write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return Half()


def test_disk_full_during_cache_writes(reference, manifest, ckpt, tmp_path, monkeypatch, capsys):
    from stylefusion.cli import main as cli_main

    _, ref, _ = reference
    cache = tmp_path / "cache"
    full = _FullDisk(fail_at=4)
    monkeypatch.setattr(cache_mod, "open", full, raising=False)
    code = cli_main(_extract_argv(manifest, ckpt, cache))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("error: ") and "disk full" in err[-1] and "Traceback" not in "\n".join(err)
    assert full.count == 4
    snap = _snapshot(cache)  # the three entries written before the disk filled, whole
    assert len(snap) == 3
    for name, entry in snap.items():
        _assert_same({name: entry}, {name: ref[name]})
    assert _temp_files(cache) == [], "a partial temporary file was left behind"

    monkeypatch.undo()  # space freed: rerun and finish
    assert cli_main(_extract_argv(manifest, ckpt, cache)) == 0
    _assert_same(_snapshot(cache), ref)
    assert _temp_files(cache) == []
