"""``stylefusion train``: the fusion head on cached features, with the report's recipe.

Recipe (the report, "Training" section; defaults here where it names no value):

- AdamW (lr 3e-4, weight decay 0.01 by default: the report names the optimiser family only);
- ``CosineAnnealingWarmRestarts(T_0=10 epochs, T_mult=2, eta_min=lr/100)``, stepped per *batch*
  with the fractional epoch ``epoch + (batch + 1) / batches`` as PyTorch documents, so the
  learning rate follows the cosine within an epoch instead of in 10 steps per cycle;
- early stopping with patience 12 on validation loss, keeping the best epoch's weights;
- mixup of content, style and label on 70% of batches, ``lambda ~ Beta(alpha, alpha)`` (alpha 0.2
  by default), pairs drawn within the batch;
- ``BCEWithLogitsLoss(pos_weight = n_real / n_fake)`` from the train segments, so an imbalanced set
  (FaceForensics++ has 4 fakes per original) does not teach "always fake"; validation loss uses the
  same weighting so early stopping watches the objective being optimised;
- TensorBoard scalars (loss, accuracy, AUC, lr) and a ``training_history.json`` for the figures.

Samples are segments (every judged person in each analysed window, what inference judges; see
:mod:`stylefusion.research.extract`), read as the datasets label them
(:meth:`stylefusion.research.data.CachedFeatures.units`): a segment whose own label is known (a
real video's; a fake video's with one judged person; a self-blended pseudo-fake's) is one unit; a
fake video of several people is one multiple-instance bag whose logit is the max over its
segments, as the detector answers a video. The loss, mixup (between single segments; a bag is
left unmixed) and ``pos_weight`` count units; the record's ``fake_labels`` says which view was
used. Videos
are the unit everywhere else: the validation split (and a val carved from train) takes whole
videos, so a video's segments never straddle train and val; validation accuracy and AUC, the
calibrated threshold and the recorded val metrics score each video by the max over its segments
(:func:`stylefusion.research.metrics.video_max`), the verdict rule of the detector.

``window_s`` of the saved checkpoint is the median duration of its training videos (from the
cache entries; the source checkpoint's when no duration is known), so inference cuts a long video
into stretches as long as the videos the head learnt from. Training videos that this ``window_s``
cuts into other windows than the cache holds are counted in the record's
``recipe["window_s_source"]``: re-extract with the trained checkpoint (only those are recomputed)
and fine-tune (``--init-from``) to train on exactly its windows.

Speed: every cached feature is loaded into memory tensors once (5,000 full-size videos ≈ 400 MB)
and batches are drawn by index, so an epoch is pure head compute (see ``benchmarks/bench_train.py``).

The result is a FULL checkpoint (backbones + trained head) saved with ``save_pretrained``, whose
config says ``trained=True``, what it was trained on and how, and how its answers are calibrated
on validation data (:mod:`stylefusion.research.calibrate`): the temperature of its probability,
the threshold chosen by ``threshold_policy`` (default ``fpr:0.05``) with the validation rates
there, the conformal uncertain band at ``conformal_alpha``, the out-of-domain statistics
(``ood.*`` tensors) and the input-quality limits of its training data.

Real videos only: when every training fake is a self-blended pseudo-fake (``stylefusion extract
--self-blend``, method ``self-blend``), the record says so (``training.pseudo_fakes``) and the
card reads "trained on real videos only, with self-blended pseudo-fakes".

``--robustness [PRESET]`` then runs the saved checkpoint on the val videos under each perturbation
(:mod:`stylefusion.research.robustness`): ``OUT/robustness/`` gets ``robustness.json`` and the
heatmap, and ``training.robustness`` the per-cell AUC, FPR, TPR and share answered that the card's
"How it holds up" table and :func:`~stylefusion.research.robustness.robustness_sentence` read.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from stylefusion._io import atomic_write
from stylefusion.checkpoint import BACKBONE_PREFIXES
from stylefusion.config import PRESETS, TrainingRecord, preset_config
from stylefusion.errors import StyleFusionError
from stylefusion.research._cli import add_threads_argument, torch_threads
from stylefusion.research.cache import FeatureKey, recorded_model, windows_match
from stylefusion.research.data import SELF_BLEND_METHOD, CachedFeatures, Units, load_features
from stylefusion.research.manifest import counts
from stylefusion.research.calibrate import calibrate_head
from stylefusion.research.metrics import HISTORY_NAME, binary_metrics, predict_logits, video_max


logger = logging.getLogger(__name__)

#: Config fields of the fusion head (what ``--preset`` may change); the rest belong to the backbones
#: and preprocessing, which must stay those that made the cache.
HEAD_FIELDS = ("gru_hidden", "gru_layers", "gru_bidirectional", "style_diff", "attn_dim",
               "transformer_layers", "transformer_heads", "transformer_ff", "fc_hidden", "dropout")


class TrainError(StyleFusionError):
    """Training cannot start: no usable data, conflicting options, a model that does not fit the cache."""


@dataclass
class TrainOptions:
    """Every knob of a run; saved verbatim in the checkpoint's ``training.recipe``."""

    cache: str
    out: str
    init_from: str | None = None  # fine-tune this checkpoint's head (keeps its backbones)
    model: str | None = None  # the checkpoint whose backbones made the cache (fresh head)
    preset: str | None = None  # head sizes of a preset (with --model only)
    epochs: int = 100
    batch_size: int = 64  # the report gives none; 64 halves the per-step overhead of the GRU on CPU
    lr: float = 3e-4
    weight_decay: float = 0.01
    mixup_alpha: float = 0.2
    mixup_prob: float = 0.7
    patience: int = 12
    t0: int = 10
    t_mult: int = 2
    seed: int = 0
    val_fraction: float = 0.15  # carved from train (stratified, seeded) only when the cache has no val
    logdir: str | None = None  # TensorBoard; default <out>/runs
    device: str | None = None
    threshold_policy: str | None = None  # default: the source checkpoint's config (fpr:0.05)
    alpha: float | None = None  # conformal level; default: the source checkpoint's conformal_alpha
    robustness: str | None = None  # perturbations to run on the val videos (stylefusion.perturb syntax)
    robustness_limit: int | None = None  # val videos per class in that grid (None: all)

    def check(self) -> None:
        if self.init_from and self.model:
            raise TrainError("give --init-from (fine-tune a checkpoint) or --model (fresh head), not both")
        if self.init_from and self.preset:
            raise TrainError("--preset sets the size of a fresh head; it cannot change an --init-from head")
        for name in ("epochs", "batch_size", "t0", "t_mult"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 1")
        if self.patience < 1:
            raise TrainError(f"--patience {self.patience} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainError(f"--lr {self.lr} must be a positive number")
        if self.mixup_alpha < 0 or not 0 <= self.mixup_prob <= 1:
            raise TrainError(f"--mixup-alpha {self.mixup_alpha} must be >= 0 and --mixup-prob "
                             f"{self.mixup_prob} in [0, 1]")
        if not 0 < self.val_fraction < 1:
            raise TrainError(f"--val-fraction {self.val_fraction} must be in (0, 1)")
        if self.alpha is not None and not 0 < self.alpha < 1:
            raise TrainError(f"--alpha {self.alpha} must be in (0, 1)")
        if self.robustness is not None:
            from stylefusion.perturb import PerturbationError, parse_perturbations

            try:
                parse_perturbations(self.robustness)
            except PerturbationError as exc:
                raise TrainError(f"--robustness: {exc}") from None
        if self.robustness_limit is not None and self.robustness_limit < 1:
            raise TrainError(f"--robustness-limit {self.robustness_limit} must be >= 1")
        if self.threshold_policy is not None:
            from stylefusion.config import parse_threshold_policy
            from stylefusion.errors import ConfigError

            try:
                parse_threshold_policy(self.threshold_policy)
            except ConfigError as exc:
                raise TrainError(f"--threshold-policy: {exc}") from None


@dataclass
class BestEpoch:
    """The epoch with the lowest validation loss so far, and the head's weights after it."""

    epoch: int
    loss: float
    state: dict[str, torch.Tensor]


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    epochs_run: int
    threshold: float
    val_metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    calibration: Any = None  # the CalibrationRecord saved with the checkpoint


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Model and data
# ----------------------------------------------------------------------------------------------
def _load_model(opts: TrainOptions, cache_model_ref: str):
    """The detector to train: backbones (+ head for --init-from) and the cache key they imply."""
    from stylefusion.detector import StyleFusionDetector

    ref = opts.init_from or opts.model or cache_model_ref
    if not ref:
        raise TrainError(f"{opts.cache}: the cache does not record which checkpoint made it; pass "
                         "--model (fresh head) or --init-from (fine-tune)")
    src = StyleFusionDetector.from_pretrained(ref)
    key = FeatureKey.from_model(src, ref)
    if opts.init_from:
        return src, key, ref
    # A fresh head on the source's backbones, optionally sized by a preset.
    head = {k: getattr(preset_config(opts.preset), k) for k in HEAD_FIELDS} if opts.preset else {}
    config = src.config.replace(**head, trained=False, training=None, calibration=None, threshold=0.5)
    torch.manual_seed(opts.seed)  # the fresh head's initial weights follow --seed
    model = StyleFusionDetector(config)
    state = {k: v for k, v in src.state_dict().items() if k.startswith(BACKBONE_PREFIXES)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("fusion.") for k in missing):
        raise TrainError(f"{ref}: backbones do not fit the new config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    model.source = dict(src.source)
    return model, key, ref


def _stratified_carve(labels: torch.Tensor, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split videos (their labels [V]) into (train, val) indices per label, seeded: used only when
    the cache lacks val. Whole videos, so a video's segments stay on one side."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in (0.0, 1.0):
        idx = torch.nonzero(labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)].tolist()
        k = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)


def _duration(record: dict[str, str]) -> float | None:
    try:
        value = float(record.get("duration") or "nan")
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _window_limits() -> tuple[float, float]:
    from stylefusion.config import StyleFusionConfig

    meta = StyleFusionConfig.__dataclass_fields__["window_s"].metadata
    return float(meta["lo"]), float(meta["hi"])


def median_window(train: CachedFeatures, default: float) -> tuple[float, str]:
    """``window_s`` for the trained checkpoint: the median duration of the training videos.

    Within the config's limits [lo, hi]; ``default`` (the source checkpoint's) when no training
    video's duration is known. Returns (window_s, a sentence saying where it came from and how
    many training videos it cuts into other windows than the cache holds).
    """
    lo, hi = _window_limits()
    known = [d for d in (_duration(r) for r in train.records) if d is not None]
    if not known:
        return float(default), ("the source checkpoint's: the cache records no duration of its "
                                "training videos")
    median = float(np.median(known))
    window = float(min(max(median, lo), hi))
    text = f"median duration of {len(known)} of {train.num_videos} training videos"
    if window != median:
        text = f"median duration {median:g} s of {len(known)} of {train.num_videos} training videos, within [{lo:g}, {hi:g}]"
    recut = 0
    for r in train.records:
        d, was = _duration(r), float(r.get("window_s") or "nan")
        num = int(r["num_windows"]) if r.get("num_windows") else None
        if d is not None and not windows_match(d, was, None, num, window, None):
            recut += 1
    if recut:
        text += (f"; {recut} of them are cut into other windows than the cache holds (re-extract with this "
                 "checkpoint and fine-tune with --init-from to train on exactly its windows)")
    return window, text


def _mixup(content: torch.Tensor, style: torch.Tensor, y: torch.Tensor, alpha: float,
           rng: np.random.Generator, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zhang et al. 2017, applied to content, style and label with one lambda (the report's eq.)."""
    lam = float(rng.beta(alpha, alpha))
    j = torch.randperm(len(y), generator=gen).to(y.device)
    return (lam * content + (1 - lam) * content[j], lam * style + (1 - lam) * style[j],
            lam * y + (1 - lam) * y[j])


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def train(opts: TrainOptions) -> TrainResult:
    """Train (or fine-tune) the fusion head on a feature cache and save a full checkpoint."""
    opts.check()
    t_start = time.perf_counter()
    seed_everything(opts.seed)
    # Which checkpoint made the cache: the cache says (model_ref metadata) unless told otherwise.
    recorded = "" if (opts.init_from or opts.model) else recorded_model(opts.cache)
    model, key, ref = _load_model(opts, recorded)
    try:
        # Any window cut: the checkpoint's window_s is set from the training videos below.
        data = load_features(opts.cache, splits=("train", "val"), expect=key.any_windows())
    except StyleFusionError as exc:
        raise TrainError(f"{exc} [model: {ref}]") from None
    c = model.config
    want = ((c.num_clips, c.content_dim), (c.num_frames, len(c.style_levels), c.style_dim))
    have = (tuple(data.content.shape[1:]), tuple(data.style.shape[1:]))
    if have != want:
        raise TrainError(f"{opts.cache}: features are content {have[0]} / style {have[1]}, the model "
                         f"expects {want[0]} / {want[1]}")

    # Splits by video: a video's segments are all on one side.
    train_v = [i for i, r in enumerate(data.records) if r["split"] == "train"]
    val_v = [i for i, r in enumerate(data.records) if r["split"] == "val"]
    val_source = "val split of the cache"
    if not train_v:
        raise TrainError(f"{opts.cache}: no valid train entries")
    if not val_v:
        tr, va = _stratified_carve(data.videos(train_v).video_labels, opts.val_fraction, opts.seed)
        val_v, train_v = [train_v[i] for i in va], [train_v[i] for i in tr]
        val_source = (f"{opts.val_fraction:.0%} of train videos, stratified, seed {opts.seed} "
                      "(the cache has no val split)")
        logger.warning("no val entries in %s: using %s", opts.cache, val_source)
    tr, va = data.videos(train_v), data.videos(val_v)
    window_s, window_source = median_window(tr, c.window_s)
    logger.info("window_s of the trained checkpoint: %s", window_source)

    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    head = model.fusion.to(device)
    best, history = fit_head(head, tr, va, opts)

    head.load_state_dict(best.state)
    head.eval()
    # Temperature, threshold (by policy), conformal band, out-of-domain statistics, quality limits.
    policy = {k: v for k, v in (("threshold_policy", opts.threshold_policy), ("conformal_alpha", opts.alpha))
              if v is not None}
    c = c.replace(**policy)
    cal = calibrate_head(head, tr, va, c)
    # Video level: a video's p_fake is the max over its (calibrated) segments.
    threshold, threshold_source, v_labels = cal.threshold, cal.threshold_source, va.video_labels.numpy()
    val_metrics = binary_metrics(v_labels, cal.val_p_fake, threshold)
    val_metrics["loss"] = best.loss
    # Videos by label per subset: a val carved from train still says split "train" in its records.
    split_counts = {"train": counts(tr.video_labels.tolist()), "val": counts(v_labels.tolist())}
    record = training_record(opts, key=key, model_ref=ref, datasets=sorted({r["dataset"] for r in data.records}),
                             split_counts=split_counts, val_source=val_source, best=best,
                             epochs_run=len(history), val_metrics=val_metrics, threshold_source=threshold_source,
                             window_s=window_s, window_source=window_source,
                             segments={"train": counts(tr.labels.tolist()), "val": counts(va.labels.tolist())},
                             methods=sorted({r["method"] for r in tr.records if int(r["label"]) == 1}),
                             units=tr.units())
    out = Path(opts.out)
    # The history first: the checkpoint names it, so it must exist before the checkpoint does.
    atomic_write(out / HISTORY_NAME, json.dumps({
        "epochs": history, "best_epoch": best.epoch, "threshold": threshold,
        "threshold_source": threshold_source, "val_metrics": record.val_metrics}, indent=2))
    # The saved checkpoint is built from its final config (the calibration decides which buffers it
    # has) and loaded strictly: the source's backbones, the best head, the out-of-domain statistics.
    from stylefusion.detector import StyleFusionDetector

    final = StyleFusionDetector(c.replace(trained=True, training=record, window_s=window_s, **cal.config_changes()))
    state = {k: v for k, v in model.state_dict().items() if k.startswith(BACKBONE_PREFIXES)}
    state.update({f"fusion.{k}": v.cpu() for k, v in head.state_dict().items()})
    state.update(cal.ood_state)
    final.load_state_dict(state, strict=True)
    final.source = dict(model.source)
    final.save_pretrained(out)
    logger.info("saved %s: best epoch %d of %d, val auc %s, threshold %.3f", out, best.epoch, len(history),
                val_metrics["auc"], threshold)
    if opts.robustness:
        robustness_on_val(out, opts, va.records)
    return TrainResult(out, best.epoch, len(history), float(threshold), val_metrics, history,
                       time.perf_counter() - t_start, cal.record)


def bag_logits(logits: torch.Tensor, owner: torch.Tensor, units: int) -> torch.Tensor:
    """[units]: the max of the segment ``logits`` [M] of each unit (``owner`` [M]: the unit of
    each); a unit of one segment keeps its logit. The max is the detector's verdict rule, and its
    gradient reaches the bag's most suspicious segment (the multiple-instance view)."""
    if len(owner) == units:  # no bag: the identity, kept exact
        return logits
    out = torch.full((units,), -torch.inf, dtype=logits.dtype, device=logits.device)
    return out.scatter_reduce(0, owner, logits, reduce="amax", include_self=True)


def fit_head(head: nn.Module, train: CachedFeatures, val: CachedFeatures,
             opts: TrainOptions) -> tuple[BestEpoch, list[dict[str, float]]]:
    """The training loop (the recipe of the module docstring) with early stopping on val loss.

    Trains ``head`` on the device it is on, one sample per unit (a segment, or a fake video's bag:
    :meth:`CachedFeatures.units`); the val loss is the val units' mean, val accuracy and AUC are the videos' (max over segments, at 0.5). TensorBoard scalars go
    to ``opts.logdir`` (default ``<opts.out>/runs``). Returns the best epoch (its weights, not
    loaded into ``head``) and one history row per epoch run.
    """
    device = next(head.parameters()).device
    xc, xs = train.content.to(device), train.style.to(device)
    vc, vs = val.content.to(device), val.style.to(device)
    units, v_units = train.units(), val.units()
    y, vy = units.labels.to(device), v_units.labels.to(device)
    v_index, v_count, v_labels = val.video_index.numpy(), val.num_videos, val.video_labels.numpy()
    n_fake = int(y.sum().item())
    n_real = len(y) - n_fake
    if n_fake == 0 or n_real == 0:
        raise TrainError(f"{opts.cache}: train split has {n_real} real and {n_fake} fake segments or bags "
                         f"({train.num_videos} videos); both classes are needed")
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(n_real / n_fake, device=device))
    optimizer = torch.optim.AdamW(head.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=opts.t0, T_mult=opts.t_mult, eta_min=opts.lr / 100)

    from torch.utils.tensorboard import SummaryWriter

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(opts.logdir or out / "runs"))
    gen = torch.Generator().manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    n, bs = len(y), opts.batch_size
    n_batches = math.ceil(n / bs)
    best = BestEpoch(0, math.inf, copy.deepcopy(head.state_dict()))
    v_seg, v_owner = v_units.expand(torch.arange(len(v_units)))
    history: list[dict[str, float]] = []
    logger.info("training on %d units (%d real, %d fake; %d of them multiple-instance bags) from %d segments of %d "
                "videos, validating on %d segments of %d videos; %d batches per epoch", n, n_real, n_fake, units.bags,
                len(train), train.num_videos, len(val), v_count, n_batches)
    try:
        for epoch in range(opts.epochs):
            t_epoch = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            head.train()
            perm = torch.randperm(n, generator=gen).to(device)
            loss_sum = correct = 0.0
            for b in range(n_batches):
                idx = perm[b * bs:(b + 1) * bs]
                seg, owner = units.expand(idx)
                seg, owner = seg.to(device), owner.to(device)
                bc, bst, by = xc[seg], xs[seg], y[idx]
                if opts.mixup_alpha > 0 and len(idx) > 1 and rng.random() < opts.mixup_prob:
                    if len(seg) == len(idx):  # single segments only (every batch without a bag)
                        bc, bst, by = _mixup(bc, bst, by, opts.mixup_alpha, rng, gen)
                    else:  # mix the single segments among themselves; bags stay as they are
                        single = (units.lengths[idx.cpu()] == 1).to(device)
                        at = torch.nonzero(single[owner]).flatten()
                        if len(at) > 1:
                            by = by.clone()
                            bc[at], bst[at], by[owner[at]] = _mixup(bc[at], bst[at], by[owner[at]],
                                                                    opts.mixup_alpha, rng, gen)
                logits = bag_logits(head(bc, bst).logits, owner, len(idx))
                loss = criterion(logits, by)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step(epoch + (b + 1) / n_batches)
                loss_sum += loss.item() * len(idx)
                correct += ((logits > 0) == (by > 0.5)).sum().item()
            head.eval()
            v_logits = predict_logits(head, vc, vs)
            v_loss = criterion(bag_logits(v_logits[v_seg.to(device)], v_owner.to(device), len(vy)), vy).item()
            vm = binary_metrics(v_labels, video_max(torch.sigmoid(v_logits).cpu(), v_index, v_count), 0.5)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n,
                   "val_loss": v_loss, "val_acc": vm["accuracy"], "val_auc": vm["auc"],
                   "seconds": time.perf_counter() - t_epoch}
            history.append(row)
            for name, value in row.items():
                if name not in ("epoch", "seconds") and value is not None:
                    group, _, metric = name.partition("_")
                    writer.add_scalar(f"{metric}/{group}" if metric else name, value, epoch + 1)
            improved = v_loss < best.loss - 1e-6
            if improved:
                best = BestEpoch(epoch + 1, v_loss, copy.deepcopy(head.state_dict()))
            logger.info("epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %s | lr %.2e%s",
                        epoch + 1, row["train_loss"], row["train_acc"], v_loss, vm["accuracy"],
                        "n/a" if vm["auc"] is None else f"{vm['auc']:.3f}", lr, " *" if improved else "")
            if epoch + 1 - best.epoch >= opts.patience:
                logger.info("early stop: val loss has not improved for %d epochs (best epoch %d)",
                            opts.patience, best.epoch)
                break
    finally:
        writer.close()
    return best, history


def robustness_on_val(out: Path, opts: TrainOptions, val_records: list[dict[str, str]]) -> dict[str, Any]:
    """``--robustness``: the saved checkpoint run on the val videos under each perturbation
    (:mod:`stylefusion.research.robustness`); ``OUT/robustness/`` gets robustness.json and the
    heatmap, and the checkpoint's ``training.robustness`` the per-cell figures (re-saved, so the
    card gets its "How it holds up" table). Self-blended pseudo-fakes exist only as features, not
    as files, so they are left out of the grid (its fakes are the cache's labelled fakes, if any)."""
    from dataclasses import replace

    from stylefusion.detector import StyleFusionDetector
    from stylefusion.research import robustness as rb

    det = StyleFusionDetector.from_pretrained(out, device=opts.device)
    videos = sorted((rb.VideoItem(r["video_id"], r["path"], int(r["label"])) for r in val_records
                     if r.get("method") != SELF_BLEND_METHOD), key=lambda v: v.video_id)
    if opts.robustness_limit is not None:
        videos = ([v for v in videos if v.label == 0][:opts.robustness_limit]
                  + [v for v in videos if v.label == 1][:opts.robustness_limit])
    grid = rb.run_grid(det, videos, opts.robustness, seed=opts.seed)
    rb.write_report(grid, out / "robustness", model=det.identity(), split="val")
    record = replace(det.config.training, robustness=rb.record_summary(grid, "val"))
    det.config = det.config.replace(training=record)
    det.save_pretrained(out)
    logger.info("robustness grid on %d val videos: %d cells in %.0f s", len(videos), len(grid["cells"]),
                grid["seconds"])
    return grid


def training_record(opts: TrainOptions, *, key: FeatureKey, model_ref: str, datasets: list[str],
                    split_counts: dict[str, dict[str, int]], val_source: str, best: BestEpoch, epochs_run: int,
                    val_metrics: dict[str, Any], threshold_source: str, window_s: float | None = None,
                    window_source: str = "", segments: dict[str, dict[str, int]] | None = None,
                    methods: Sequence[str] = (), units: Units | None = None) -> TrainingRecord:
    """What the checkpoint's config says about this run (``config.training``).

    ``split_counts`` are videos per subset and label; ``segments`` the samples (segments) likewise,
    kept in ``features``. ``window_s`` and where it came from go in the recipe (the record has no
    field of its own for them). ``methods``: the manipulation methods of the training fakes; when
    they are all self-blends, the record says the head was trained on real videos only.
    ``units``: the training units (:meth:`CachedFeatures.units`); the record's ``fake_labels``
    says how fake videos' labels were read, and the loss's ``pos_weight`` counts units.
    """
    n_real, n_fake = split_counts["train"]["real"], split_counts["train"]["fake"]
    self_blend = bool(methods) and all(m == SELF_BLEND_METHOD for m in methods)
    seg = (segments or {}).get("train") or split_counts["train"]
    if units is not None:
        n_pos = int(units.labels.sum().item())
        seg = {"real": len(units) - n_pos, "fake": n_pos}
    return TrainingRecord(
        datasets=datasets,
        data_summary=f"{'+'.join(datasets)} ({n_real}+{n_fake} train videos)",
        data=str(Path(opts.cache).resolve()),
        counts=split_counts,
        val_source=val_source,
        val_metrics={k: v for k, v in val_metrics.items() if k != "classification_report"},
        threshold_source=threshold_source,
        features={"backbone_sha256": key.backbone_sha256, "preprocessing_sha256": key.preprocessing_sha256,
                  "model": model_ref,
                  # samples: every judged person in each analysed window; val per video
                  **({"segments": {k: dict(v) for k, v in segments.items()}} if segments else {})},
        init_from=opts.init_from,
        recipe={**{k: v for k, v in asdict(opts).items() if k not in ("cache", "out", "logdir", "device")},
                "optimizer": "AdamW",
                "scheduler": f"CosineAnnealingWarmRestarts(T_0={opts.t0}, T_mult={opts.t_mult}, "
                             f"eta_min=lr/100), stepped per batch",
                "loss": (f"BCEWithLogits(pos_weight={seg['real']}/{seg['fake']}), per segment"
                         + (f" and per bag ({units.bags} bags, max over their segments)" if units and units.bags else "")),
                **({"window_s": float(window_s), "window_s_source": window_source} if window_s is not None else {})},
        epochs_run=epochs_run,
        best_epoch=best.epoch,
        history_file=HISTORY_NAME,
        pseudo_fakes="self-blend" if self_blend else "",
        fake_labels="" if units is None else units.describe(),
    )


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainOptions(cache="", out="")
    parser.description = (
        "Train the fusion head on cached features (AdamW, cosine annealing with warm restarts, "
        "early stopping on val loss, mixup) and save a full checkpoint (backbones + trained head) "
        "with a decision threshold calibrated on the val split.")
    parser.add_argument("--cache", required=True, help="feature cache from `stylefusion extract` (train and val entries)")
    parser.add_argument("--out", required=True, help="folder for the trained checkpoint, history and TensorBoard logs")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--init-from", help="checkpoint to fine-tune: keeps its backbones, preprocessing and head")
    src.add_argument("--model", "--backbones", dest="model",
                     help="checkpoint whose backbones made the cache; trains a fresh head "
                          "(default: the checkpoint the cache records)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="head sizes of a preset for a fresh head")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"videos per batch (default {d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate, cosine max (default {d.lr})")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay})")
    parser.add_argument("--mixup-alpha", type=float, default=d.mixup_alpha,
                        help=f"Beta(alpha, alpha) of mixup; 0 disables (default {d.mixup_alpha})")
    parser.add_argument("--mixup-prob", type=float, default=d.mixup_prob,
                        help=f"fraction of batches mixed up (default {d.mixup_prob}, the report's)")
    parser.add_argument("--patience", type=int, default=d.patience,
                        help=f"early stopping: epochs without val-loss improvement (default {d.patience})")
    parser.add_argument("--t0", type=int, default=d.t0, help=f"epochs of the first cosine cycle (default {d.t0})")
    parser.add_argument("--t-mult", type=int, default=d.t_mult, help=f"cycle length factor (default {d.t_mult})")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help="fraction of train used as val when the cache has no val entries")
    parser.add_argument("--threshold-policy", default=None,
                        help="how to choose the decision threshold on val videos: 'fpr:RATE' (at most RATE of real "
                             "videos called fake), 'youden' (max balanced accuracy) or a fixed value (default: the "
                             "checkpoint's threshold_policy, fpr:0.05)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="conformal level of the uncertain band: the prediction set holds the true label with "
                             "probability >= 1 - alpha (default: the checkpoint's conformal_alpha, 0.1)")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of init, shuffling and mixup (default {d.seed})")
    parser.add_argument("--robustness", nargs="?", const="all", default=None, metavar="PERTURB",
                        help="after training, run the detector on the val videos under each perturbation (a preset: "
                             "deeperforensics, social, all (the default when given bare), or name:level,...) and "
                             "record the figures in the checkpoint and its card (OUT/robustness/)")
    parser.add_argument("--robustness-limit", type=int, default=None, metavar="N",
                        help="at most N val videos per class in the robustness grid (default: all)")
    parser.add_argument("--logdir", help="TensorBoard folder (default OUT/runs)")
    parser.add_argument("--device", help="torch device (default cuda if available, else cpu)")
    add_threads_argument(parser)


def run_train(args: argparse.Namespace) -> int:
    opts = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions)})
    with torch_threads(args.threads):
        result = train(opts)
    m = result.val_metrics
    auc = "n/a" if m["auc"] is None else f"{m['auc']:.4f}"
    print(f"saved {result.out}: best epoch {result.best_epoch} of {result.epochs_run}; val AUC {auc}, "
          f"accuracy {m['accuracy']:.4f} at threshold {result.threshold:.4f}; {result.seconds:.1f} s")
    cal = result.calibration
    if cal is not None:
        print(f"calibration: temperature {cal.temperature:.3f} (val ECE {cal.ece_before:.4f} -> {cal.ece_after:.4f}); "
              f"val TPR {_pct(cal.val_tpr)} and FPR {_pct(cal.val_fpr)} at the threshold; conformal coverage "
              f"{_pct(cal.coverage_val)} of val segments, {_pct(cal.coverage_val_videos)} of val videos; "
              f"out-of-domain threshold {cal.ood_threshold:.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefusion.research.train`` (the same as ``stylefusion train``), also in-process:
    parse ``argv``, run, return the exit status."""
    from stylefusion.research._cli import run_standalone

    return run_standalone("train", add_train_arguments, run_train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
