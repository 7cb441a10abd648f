"""A whole feature cache in memory, for training and evaluation: one sample per segment.

A cache entry holds one video's segments (every judged person's T crops in each analysed
window); here every segment becomes a sample, and each sample keeps which video it came from
(``video_index`` into ``records``, one record per video), so training splits by video and
evaluation scores a video as the max over its segments (the verdict rule: a fake anywhere makes
the video fake; :func:`stylefusion.research.metrics.video_max`).

A video's label belongs to the video, not to one of its people (no supported dataset says which
face of a fake video is the swapped one; DFDC has two-person fakes with one face swapped), so
training reads labels as the datasets allow (:meth:`CachedFeatures.units`): each segment of a
real video is a real sample; so is each segment of a fake video with one judged person, or of a
self-blended pseudo-fake (every judged face blended), a fake sample; a fake video of several
people is one *multiple-instance bag* (at least one of its people is fake, the others may not
be), scored by the max over its segments, the detector's own verdict rule.

Training draws batches by index from stacked tensors, so an epoch is pure head compute; the cache
is read once, through :class:`stylefusion.research.cache.FeatureCache` (the one reader of entries,
which also decides what is invalid or corrupt and warns about it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylefusion.research.cache import CacheCorruptionWarning, CacheError, FeatureCache, FeatureKey
from stylefusion.research.metrics import video_max


#: The manifest ``method`` of self-blended pseudo-fakes: every judged face of one is blended.
SELF_BLEND_METHOD = "self-blend"


@dataclass
class Units:
    """Training units of a :class:`CachedFeatures`: a segment of known label, or a bag of segments.

    Unit ``u`` is the segments ``segments[ptr[u]:ptr[u + 1]]`` with label ``labels[u]``; a unit of
    more than one segment is a multiple-instance bag (a fake video of several people) whose score
    is the max over its segments. ``known`` [N] marks the segments whose own label is known.
    """

    segments: torch.Tensor  # [N] int64, the segments grouped by unit
    ptr: torch.Tensor  # [U + 1] int64
    labels: torch.Tensor  # [U] float32
    known: torch.Tensor  # [N] bool, by segment index
    bags: int  # units that are bags

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def expand(self, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(segment indices [M], owner [M]: position in ``units`` of each) of the given units."""
        units = units.cpu()
        lengths = self.lengths[units]
        owner = torch.repeat_interleave(torch.arange(len(units)), lengths)
        starts = torch.repeat_interleave(self.ptr[units], lengths)
        offset = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        return self.segments[starts + offset], owner

    def describe(self) -> str:
        """How the labels were read, in words (the training record's ``fake_labels``)."""
        if not self.bags:
            return "per segment: every judged person of a fake video was fake (one person, or self-blended)"
        return (f"multiple-instance: {self.bags} fake videos of several judged people were bags scored by the max "
                "over their segments (at least one person fake); other segments kept their video's label")


@dataclass
class CachedFeatures:
    """All valid entries of a cache stacked into tensors: N segments of V videos.

    Per segment: content [N, C, Dc]; style [N, T, L, Ds]; labels [N] float32 (the video's);
    fallback [N, T] bool; video_index [N] int64 (into ``records``); window [N] and person [N]
    int64 (where in the video the segment is, and whose crops); quality [N, 3] float32 (face px,
    sharpness, brightness; NaN where the entry did not measure it). Per video: records, one metadata
    dict each (video_id, split, dataset, method, duration, ...), as the entry header stores it, in
    cache order; every video has at least one segment. Count videos with
    :func:`stylefusion.research.manifest.counts` on ``records`` or ``video_labels``.
    """

    content: torch.Tensor
    style: torch.Tensor
    labels: torch.Tensor
    fallback: torch.Tensor
    video_index: torch.Tensor
    window: torch.Tensor
    person: torch.Tensor
    records: list[dict[str, str]]
    backbone_sha256: str
    preprocessing_sha256: str
    quality: torch.Tensor | None = None
    #: Valid entries of the splits read that were left out: "other_source" (other backbones or
    #: preprocessing) and "other_windows" (cut otherwise than the expected window_s cuts them).
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quality is None:
            self.quality = torch.full((len(self.labels), 3), float("nan"))

    def __len__(self) -> int:
        """Samples (segments)."""
        return int(self.labels.shape[0])

    @property
    def num_videos(self) -> int:
        return len(self.records)

    @property
    def video_labels(self) -> torch.Tensor:
        """[V] float32: each video's label."""
        return torch.tensor([float(r["label"]) for r in self.records])

    @property
    def segments_per_video(self) -> torch.Tensor:
        """[V] int64."""
        return torch.bincount(self.video_index, minlength=self.num_videos)

    def video_scores(self, scores: np.ndarray | torch.Tensor) -> np.ndarray:
        """[V] float64: each video's score, the max over its segments' ``scores`` [N]."""
        return video_max(scores, self.video_index.numpy(), self.num_videos)

    def decisive(self, scores: np.ndarray | torch.Tensor) -> np.ndarray:
        """[V] int64: for each video, the index of its segment with the highest score (the first of ties)."""
        s = np.asarray(torch.as_tensor(scores).detach().cpu().numpy(), dtype=np.float64)
        vid = self.video_index.numpy()
        order = np.lexsort((np.arange(len(s)), -s, vid))  # by video, score desc, position
        first = np.ones(len(order), bool)
        first[1:] = vid[order][1:] != vid[order][:-1]
        return order[first]

    def units(self) -> Units:
        """The training units (module docstring): a real video's segments one by one; a fake
        video's one by one when its label is every segment's (one judged person, or a
        self-blended pseudo-fake); otherwise the fake video as one bag. Units in segment order."""
        n_people = [len(set(p)) for p in self._people_per_video()]
        vid = self.video_index
        video_known = torch.tensor([int(r["label"]) == 0 or r.get("method") == SELF_BLEND_METHOD or n_people[v] <= 1
                                    for v, r in enumerate(self.records)], dtype=torch.bool)
        known = video_known[vid] if len(vid) else torch.zeros(0, dtype=torch.bool)
        groups: list[list[int]] = []
        labels: list[float] = []
        bag_of: dict[int, int] = {}  # video -> its unit
        for i, v in enumerate(vid.tolist()):
            if bool(known[i]):
                groups.append([i])
                labels.append(float(self.labels[i]))
            elif v in bag_of:
                groups[bag_of[v]].append(i)
            else:  # the bag takes the place of its first segment
                bag_of[v] = len(groups)
                groups.append([i])
                labels.append(1.0)
        ptr = np.cumsum([0] + [len(g) for g in groups])
        return Units(torch.tensor([i for g in groups for i in g], dtype=torch.long), torch.from_numpy(ptr).long(),
                     torch.tensor(labels, dtype=torch.float32), known, bags=len(bag_of))

    def _people_per_video(self) -> list[list[int]]:
        people: list[list[int]] = [[] for _ in self.records]
        for v, p in zip(self.video_index.tolist(), self.person.tolist()):
            people[v].append(p)
        return people

    def instances(self, scores: np.ndarray | torch.Tensor) -> np.ndarray:
        """[K] segment indices whose label can be scored one by one: the segments of known label,
        and of each bag its witness, the segment with the highest ``scores`` (the one its max is;
        the multiple-instance view of a segment-level fit such as temperature or conformal)."""
        u = self.units()
        s = np.asarray(torch.as_tensor(scores).detach().cpu().numpy(), dtype=np.float64)
        picks = []
        for k in range(len(u)):
            segs = u.segments[u.ptr[k]:u.ptr[k + 1]].numpy()
            picks.append(segs if len(segs) == 1 else segs[[int(np.argmax(s[segs]))]])
        return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)

    def subset(self, index: Sequence[int] | torch.Tensor) -> "CachedFeatures":
        """The given segments (in that order); ``records`` keeps the videos they belong to."""
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        vid = self.video_index[idx]
        kept, new_index = torch.unique(vid, sorted=True, return_inverse=True)
        return CachedFeatures(self.content[idx], self.style[idx], self.labels[idx], self.fallback[idx],
                              new_index.reshape(-1).long(), self.window[idx], self.person[idx],
                              [self.records[i] for i in kept.tolist()], self.backbone_sha256,
                              self.preprocessing_sha256, self.quality[idx], dict(self.skipped))

    def videos(self, index: Sequence[int] | torch.Tensor) -> "CachedFeatures":
        """The given videos with all their segments (videos in cache order)."""
        wanted = torch.zeros(self.num_videos, dtype=torch.bool)
        wanted[torch.as_tensor(index, dtype=torch.long)] = True
        return self.subset(torch.nonzero(wanted[self.video_index]).flatten())

    def split(self, *names: str) -> "CachedFeatures":
        """The videos of these splits."""
        return self.videos([i for i, r in enumerate(self.records) if r.get("split") in names])


def load_features(cache_dir: str | Path, splits: Sequence[str] | None = None,
                  expect: FeatureKey | None = None) -> CachedFeatures:
    """Read every valid entry (of ``splits``) into memory tensors, once: one sample per segment.

    Entries made by other backbones or preprocessing than ``expect``, or cut into other windows
    than ``expect.window_s`` cuts their video, are skipped with a warning; without ``expect`` the
    cache must be uniform (one backbone/preprocessing source).

    Raises:
        CacheError: the folder has no usable entry, or mixes several feature sources.
    """
    cache = FeatureCache(cache_dir)
    if not cache.root.is_dir():
        raise CacheError(f"{cache.root}: cache folder not found (run `stylefusion extract` first)")
    # Pass 1, headers only: choose the entries. Pass 2 reads each chosen entry straight into
    # preallocated tensors, so 5,000 videos never sit in memory twice.
    chosen = list(cache.entries(splits, headers_only=True))
    skipped = {"other_source": 0, "other_windows": 0}
    if expect is not None:
        source = [e for e in chosen if expect.same_source(e.header)]
        keep = [e for e in source if expect.same_windows(e.header)]
        if len(source) < len(chosen):
            warnings.warn(f"{cache.root}: skipped {len(chosen) - len(source)} entries extracted with other "
                          "backbones or preprocessing than the model's", CacheCorruptionWarning, stacklevel=2)
        if len(keep) < len(source):
            warnings.warn(f"{cache.root}: skipped {len(source) - len(keep)} videos cut into other windows than "
                          f"the model's window_s={expect.window_s:g} s cuts them (run `stylefusion extract` "
                          "with this model: it recomputes only those)", CacheCorruptionWarning, stacklevel=2)
        if chosen and not source:
            raise CacheError(f"{cache.root}: no entry was extracted with this model's backbones and "
                             "preprocessing (extract again with this model, or name the model that made the cache)")
        if source and not keep:
            raise CacheError(f"{cache.root}: no entry was cut into the windows of this model's "
                             f"window_s={expect.window_s:g} s (extract again with this model)")
        skipped = {"other_source": len(chosen) - len(source), "other_windows": len(source) - len(keep)}
        chosen = keep
    if not chosen:
        where = f" in splits {list(splits)}" if splits else ""
        raise CacheError(f"{cache.root}: no valid cache entries{where}")
    sources = {(e.header.backbone_sha256, e.header.preprocessing_sha256) for e in chosen}
    if len(sources) > 1:
        raise CacheError(f"{cache.root}: entries come from {len(sources)} different backbone/preprocessing "
                         "combinations; use one cache folder per model")
    precisions = sorted({e.header.precision for e in chosen if e.header.precision})
    if len(precisions) > 1:  # e.g. a run resumed on the other CPU kind with --precision auto
        raise CacheError(f"{cache.root}: entries were extracted in {' and '.join(precisions)}; features of one "
                         "cache must share a precision (run `stylefusion extract --precision fp32` to redo them)")

    n = sum(e.header.segments for e in chosen)
    content = style = fallback = None
    video_index = torch.empty(n, dtype=torch.long)
    window = torch.empty(n, dtype=torch.long)
    person = torch.empty(n, dtype=torch.long)
    quality = torch.empty(n, 3, dtype=torch.float32)
    records: list[dict[str, str]] = []
    j = 0
    for e in chosen:
        entry = cache.read(e.path)
        if entry is None or entry.features is None:  # became unreadable (warned) or invalid since pass 1
            continue
        seg = entry.features
        s = len(seg)
        if j + s > n:  # rewritten with more segments since pass 1: skip rather than overflow
            warnings.warn(f"{e.path}: changed while the cache was read; skipped", CacheCorruptionWarning, stacklevel=2)
            continue
        c, st = seg.content, seg.style
        fb = torch.from_numpy(np.asarray(seg.fallback, dtype=bool))
        if content is None:
            content = torch.empty((n, *c.shape[1:]), dtype=torch.float32)
            style = torch.empty((n, *st.shape[1:]), dtype=torch.float32)
            fallback = torch.empty((n, *fb.shape[1:]), dtype=torch.bool)
        if c.shape[1:] != content.shape[1:] or st.shape[1:] != style.shape[1:] or fb.shape[1:] != fallback.shape[1:]:
            raise CacheError(f"{e.path}: features {list(c.shape[1:])}/{list(st.shape[1:])} differ from the other "
                             f"entries' {list(content.shape[1:])}/{list(style.shape[1:])}")
        content[j:j + s], style[j:j + s], fallback[j:j + s] = c, st, fb
        video_index[j:j + s] = len(records)
        window[j:j + s] = torch.from_numpy(np.asarray(seg.window, dtype=np.int64))
        person[j:j + s] = torch.from_numpy(np.asarray(seg.person, dtype=np.int64))
        quality[j:j + s] = torch.from_numpy(np.asarray(seg.quality, dtype=np.float32))
        records.append(entry.meta)
        j += s
    if not records:
        raise CacheError(f"{cache.root}: no readable cache entries")
    labels = torch.tensor([float(r["label"]) for r in records])[video_index[:j]]
    (bb, pp), = sources
    return CachedFeatures(content[:j], style[:j], labels, fallback[:j], video_index[:j], window[:j], person[:j],
                          records, bb, pp, quality[:j], skipped)
