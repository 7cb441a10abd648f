"""Evidence for a verdict: which sampled frames, and which regions of their crops, moved the logit.

Two explanations of one segment (one person in one window: T face crops, ``content [C, Dc]``,
``style [T, L, Ds]``), both shown only for trained heads (:func:`require_trained`) and only because
both pass the sanity checks of Adebayo et al., *Sanity Checks for Saliency Maps* (NeurIPS 2018):
they find a planted signal, and they change when the model is randomised
(``tests/test_evidence.py``).

**Frames and clips: temporal occlusion.** Frame i's style latent is replaced by the mean of its
neighbours' (i-1 and i+1; at an end, its one neighbour) and the head is run again;
``contribution_i = logit - logit_occluded``, so a positive value means the frame pushed the segment
toward "fake". Interpolating rather than zeroing keeps the occluded sequence on the data the head
saw in training: a zero latent would itself be the most abrupt jump in the video, and a style head
exists to notice jumps. Content clips likewise (with two clips, each is replaced by the other). The
original and all ``T + C`` occluded copies go through the head in one batched pass.

**Regions: Integrated Gradients from the neighbours.** For a chosen frame i, the segment's logit is
attributed to the pixels of crop i along two paths: (a) crop i → the style encoder → latent i,
substituted into the segment's style tensor (every other latent fixed) → head; (b) the content clip
holding frame i → the content network → that clip's vector, substituted into the segment's content
→ head, keeping the slice of the clip's attribution at frame i. The method is captum's
``IntegratedGradients`` (Sundararajan et al. 2017) with the *same counterfactual as the frame
contribution*: the baseline is crop i replaced by the mean of its neighbours' crops (in the
network's normalised input, which is affine in the pixels, so this is the neighbours' mean crop).
By IG's completeness the style map sums to ``logit - logit(crop i → its neighbours' mean)``: it
spreads the frame's own contribution over its pixels (planted-signal test, one held-out fake,
frames 10-14: map sums 0.10/0.09/0.30/0.53/0.05 against occlusion contributions
0.11/0.09/0.30/0.53/0.06). Maps are signed, positive = toward "fake", float32 ``[S, S]`` at crop
resolution (the content map is upsampled bilinearly from the content network's input size).

Why this method — measured on the planted-signal setup of ``tests/test_evidence.py`` (tiny random
backbones rescaled to a trained backbone's feature scale; head trained on 32 real + 32 fake
generated segments whose fakes flicker a checkerboard patch on one cheek, 4.8% of the crop, in
sampled frames 10-14; held-out fakes x the 5 planted frames. "mass" = the map's positive mass inside
the patch / the patch's area share, mean (min); rho = Spearman rank correlation with the maps of 3
freshly initialised heads over the pixels, mean over maps and heads, on signed and on absolute
values):

==========================================  ================  ==============  ===========
method (captum)                             mass mean (min)   rho signed      rho |.|
==========================================  ================  ==============  ===========
Saliency (absolute gradient)                1.3 (0.97)        0.80            0.80
gradient (signed), InputXGradient           1.3-1.8 (0.86)    -0.10..0.04     0.55
LayerGradCam: input layer, unit 1, c1       2.6-4.6 (0.00)    -0.30..0.14     0.07-0.40
LayerGradientXActivation: unit 1, c1        2.4-2.5 (0.16)    -0.09..0.03     0.30-0.50
IntegratedGradients, neighbours' baseline   16-17 (13.6)      -0.10..0.06     0.69-0.74
==========================================  ================  ==============  ===========

Gradients and Grad-CAM pass the randomisation check but do not localise with these backbones: a
random encoder is sensitive all over the crop, and Grad-CAM's channel weights (spatial means of the
gradient) give the planted region either sign frame by frame (summed over the planted frames its
positive mass was 0.2x-7.3x the area share across 5 training seeds). Integrated Gradients from the
neighbours localises every planted frame (at least 13.6x over 4 training seeds x 4 videos x 5
frames) and its *signed* map changes with the head (mean rho -0.10..0.06; per map |rho| 0.15-0.22:
which pixels push toward "fake" is the head's pattern, not a sign flip of one pattern; content maps
-0.05..0.08). Its *absolute* map does not (0.69-0.74; content 0.82-0.84): where a frame differs from
its neighbours is a property of the video, found for any head. Hence the maps are signed,
:func:`overlay` draws them with a diverging colormap (red toward fake, blue toward real), and an
absolute-value display of them would not pass the check. Frame contributions: randomised-head rho
-0.19..0.08 signed, 0.37-0.43 absolute.

Cost: each map is ``n_steps`` forward and backward passes through an extractor; chosen frames are
bounded (:data:`DEFAULT_MAX_FRAMES`) and attributions run in float32 with autograd on, whatever
the detector's precision and the caller's grad mode, without changing the detector's weights or
modes. Full preset on 2 idle AVX-512 CPU cores (``benchmarks/bench_explain.py --repeats 2``):
contributions 0.02 s, 4 frames' heatmaps 108.6 s (27 s a frame, 16 steps), 4.9 GB peak RSS.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from stylefusion._io import atomic_write
from stylefusion.config import StyleFusionConfig
from stylefusion.errors import StyleFusionError
from stylefusion.transforms import content_clips, style_inputs

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.results import DetectionResult

logger = logging.getLogger(__name__)

#: Frames given heatmaps when the caller does not ask for more: each costs ``n_steps`` forward and
#: backward passes through both extractors.
DEFAULT_MAX_FRAMES = 4
#: Integration steps of Integrated Gradients (Gauss-Legendre): the maps' sums stay within a few
#: percent of the logit change they decompose at 16 on the planted-signal test.
DEFAULT_STEPS = 16
#: Inputs per forward/backward pass: style crops, content clips (bounds activation memory; a
#: full-size content clip with autograd holds about 1 GB).
STYLE_PASS, CONTENT_PASS = 8, 2
#: The method name carried by every heatmap (and shown to users).
METHOD = f"integrated_gradients(baseline=neighbours' mean crop, n_steps={DEFAULT_STEPS})"

UNTRAINED_REASON = "this checkpoint's fusion head is untrained: its evidence would explain random weights"

ProgressFn = Callable[[int, int], None]


class EvidenceUnavailable(StyleFusionError):
    """Evidence cannot be given for this checkpoint; the message is the one-line reason."""


class Explainable(Protocol):
    """What an explanation needs of a model: its three networks, its config and their device.

    The evidence reads these and nothing else, so it does not depend on the detector that owns
    them (the detector depends on the evidence, not the reverse). A
    :class:`~stylefusion.detector.StyleFusionDetector` has all five; :class:`Networks` holds them
    for a caller that has only the pieces.
    """

    @property
    def style(self) -> nn.Module: ...  # crops [k, 3, S, S] -> latents [k, L, Ds]

    @property
    def content(self) -> nn.Module: ...  # clips [k, 3, L, s, s] -> vectors [k, Dc]

    @property
    def fusion(self) -> nn.Module: ...  # head(content, style) -> .logits [B]

    @property
    def config(self) -> StyleFusionConfig: ...

    @property
    def device(self) -> torch.device: ...


@dataclass(frozen=True)
class Networks:
    """The pieces of :class:`Explainable`, held together; the device is the head's (where the
    weights are, so it cannot disagree with them)."""

    style: nn.Module
    content: nn.Module
    fusion: nn.Module
    config: StyleFusionConfig

    @property
    def device(self) -> torch.device:
        return _device(self.fusion)


def require_trained(config: StyleFusionConfig) -> None:
    """Refuse to explain an untrained head (an explanation of random weights is no evidence).

    Raises:
        EvidenceUnavailable: ``config.trained`` is False.
    """
    if not config.trained:
        raise EvidenceUnavailable(UNTRAINED_REASON)


# ----------------------------------------------------------------------------------------------
# Frames and clips: temporal occlusion
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contributions:
    """How much each sampled frame and each content clip pushed one segment's logit.

    ``frames[i] = logit - logit(frame i's style latent replaced by its neighbours' mean)``: positive
    means frame i pushed the segment toward "fake". ``clips`` likewise per content clip. A lone frame
    or clip (nothing to interpolate from) contributes 0.
    """

    logit: float
    frames: np.ndarray  # [T] float32
    clips: np.ndarray  # [C] float32

    def top_frames(self, k: int) -> np.ndarray:
        """Positions of the ``k`` frames that pushed most toward "fake", the strongest first."""
        return np.argsort(-self.frames, kind="stable")[:max(0, k)]


def neighbour_fill(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, ...]`` → ``[B, N, ...]``: row i replaced by the mean of rows i-1 and i+1.

    At the ends the one neighbour is used (with N = 2 each row gets the other); with N = 1 the row
    is kept, so its occlusion changes nothing.
    """
    if x.shape[1] < 2:
        return x.clone()
    prev = torch.cat([x[:, 1:2], x[:, :-1]], dim=1)  # row i-1 (row 1 for i = 0)
    nxt = torch.cat([x[:, 1:], x[:, -2:-1]], dim=1)  # row i+1 (row N-2 for i = N-1)
    return (prev + nxt) / 2


def _occluded(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, ...]`` → ``[B, N, N, ...]``: copy i of each segment with row i occluded."""
    n = x.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=x.device).view(1, n, n, *([1] * (x.ndim - 2)))
    return torch.where(eye, neighbour_fill(x)[:, None], x[:, None])


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """``modules`` in eval mode for the block; every submodule's own flag is restored afterwards."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters(), torch.empty(0)).device


def batched_contributions(head: nn.Module, content: torch.Tensor, style: torch.Tensor) -> list[Contributions]:
    """Temporal-occlusion contributions of B segments: the originals and every occluded copy
    (``B * (1 + T + C)`` inputs) in one head pass.

    Args:
        head: called as ``head(content, style)``, returning an object with ``.logits`` ``[B]``
            (a :class:`~stylefusion.models.fusion.FusionHead`); run in eval mode, in float32.
        content: ``[B, C, Dc]`` content vectors of each segment's clips.
        style: ``[B, T, L, Ds]`` style latents of each segment's sampled frames.
    """
    if content.ndim != 3 or style.ndim != 4 or len(content) != len(style):
        raise ValueError(f"expected content [B, C, Dc] and style [B, T, L, Ds] of the same B, got "
                         f"{list(content.shape)} and {list(style.shape)}")
    b, c, t = len(content), content.shape[1], style.shape[1]
    device = _device(head)
    with torch.inference_mode(), _eval_mode(head):
        content = content.to(device, torch.float32)
        style = style.to(device, torch.float32)
        # Per segment 1 + T + C copies: the original, each frame occluded, each clip occluded.
        styles = torch.cat([style[:, None], _occluded(style), style[:, None].expand(b, c, *style.shape[1:])], 1)
        contents = torch.cat([content[:, None], content[:, None].expand(b, t, *content.shape[1:]),
                              _occluded(content)], 1)
        logits = head(contents.flatten(0, 1), styles.flatten(0, 1)).logits.float().view(b, 1 + t + c)
        logits = logits.cpu().numpy().astype(np.float64)
    delta = (logits[:, :1] - logits[:, 1:]).astype(np.float32)  # [B, T + C]
    return [Contributions(float(logits[i, 0]), delta[i, :t], delta[i, t:]) for i in range(b)]


def frame_contributions(head: nn.Module, content: torch.Tensor, style: torch.Tensor) -> Contributions:
    """Temporal-occlusion contributions of one segment: ``content [C, Dc]``, ``style [T, L, Ds]``."""
    return batched_contributions(head, content[None], style[None])[0]


# ----------------------------------------------------------------------------------------------
# Regions: Integrated Gradients from the neighbours' mean crop
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameHeatmap:
    """Where in one frame's crop the evidence lies, through each extractor.

    Both maps are signed float32 ``[S, S]`` (S = crop side): positive pixels pushed the segment's
    logit toward "fake" relative to the frame looking like its neighbours' mean. ``style`` sums to
    the logit change of that replacement through the style path (Integrated Gradients'
    completeness, up to its integration error); ``content`` likewise through frame i's content clip.
    """

    position: int  # index of the frame among the segment's T sampled frames
    source_index: int  # frame number in the decoded video (-1 when not given)
    clip: int  # the content clip that holds the frame
    style: np.ndarray  # [S, S] float32
    content: np.ndarray  # [S, S] float32
    method: str


@dataclass(frozen=True)
class SegmentEvidence:
    """Everything :func:`explain_segment` gives for one segment."""

    contributions: Contributions
    heatmaps: list[FrameHeatmap]


class _StyleLogit(nn.Module):
    """Normalised crops ``[k, 3, S, S]`` of chosen frames → the segment's logit ``[k]``, each crop's
    latent put in place of its frame's (all other latents and the content fixed)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, content: torch.Tensor, style: torch.Tensor,
                 positions: torch.Tensor):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.content, self.style, self.positions = content, style, positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(x)
        # Integrated Gradients stacks its steps along the batch: step after step, the chosen frames
        # in order, so the positions repeat.
        pos = self.positions.repeat(k // len(self.positions))
        latents = self.encoder(x)  # [k, L, Ds]
        mask = nn.functional.one_hot(pos, self.style.shape[0]).bool()[:, :, None, None]  # [k, T, 1, 1]
        style = torch.where(mask, latents[:, None], self.style[None])  # [k, T, L, Ds]
        return self.head(self.content[None].expand(k, -1, -1), style).logits


class _ContentLogit(nn.Module):
    """Normalised clips ``[k, 3, L, s, s]`` → the segment's logit ``[k]``, each clip's vector put in
    place of its clip's (all other clips and the style fixed)."""

    def __init__(self, network: nn.Module, head: nn.Module, content: torch.Tensor, style: torch.Tensor,
                 clips: torch.Tensor):
        super().__init__()
        self.network, self.head = network, head
        self.content, self.style, self.clips = content, style, clips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(x)
        clips = self.clips.repeat(k // len(self.clips))
        vectors = self.network(x)  # [k, Dc]
        mask = nn.functional.one_hot(clips, self.content.shape[0]).bool()[:, :, None]  # [k, C, 1]
        content = torch.where(mask, vectors[:, None], self.content[None])  # [k, C, Dc]
        return self.head(content, self.style[None].expand(k, -1, -1, -1)).logits


def _neighbours(position: int, n: int) -> tuple[int, int]:
    """The frames whose mean replaces ``position`` (as :func:`neighbour_fill` does)."""
    if n < 2:
        return position, position
    before = position - 1 if position > 0 else 1
    after = position + 1 if position < n - 1 else n - 2
    return before, after


@contextlib.contextmanager
def _attribution_mode(networks: Explainable) -> Iterator[None]:
    """Autograd on (even under ``torch.inference_mode``), float32 (no autocast), eval mode; the
    caller's modes come back afterwards."""
    kind = networks.device.type if networks.device.type in ("cpu", "cuda") else "cpu"
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(kind, enabled=False), \
            _eval_mode(networks.style, networks.content, networks.fusion):
        yield


def _style_maps(networks: Explainable, crops: torch.Tensor, content: torch.Tensor,
                style: torch.Tensor, positions: list[int], n_steps: int) -> torch.Tensor:
    """``[k, S, S]`` style-path maps of the chosen frames (summed over colour channels)."""
    from captum.attr import IntegratedGradients

    cfg, device = networks.config, networks.device
    x = style_inputs(crops[positions], cfg, device).contiguous()  # [k, 3, S, S]
    pairs = [_neighbours(p, len(crops)) for p in positions]
    near = style_inputs(crops[[i for pair in pairs for i in pair]], cfg, device)  # [2k, 3, S, S]
    baseline = near.view(len(positions), 2, *near.shape[1:]).mean(1).contiguous()
    fn = _StyleLogit(networks.style, networks.fusion, content, style, torch.tensor(positions, device=device))
    attr = IntegratedGradients(fn).attribute(x, baselines=baseline, n_steps=n_steps,
                                             internal_batch_size=max(STYLE_PASS, len(positions)))
    return attr.sum(1).detach()


def _content_maps(networks: Explainable, crops: torch.Tensor, content: torch.Tensor,
                  style: torch.Tensor, positions: list[int], n_steps: int) -> torch.Tensor:
    """``[k, S, S]`` content-path maps: the slice at each frame of its clip's attribution."""
    from captum.attr import IntegratedGradients

    cfg, device = networks.config, networks.device
    clips = content_clips(crops, cfg, device)  # [C, 3, L, s, s]
    frames = clips.transpose(1, 2).flatten(0, 1)  # [T, 3, s, s]: frame t of clip t // L
    x, baseline = [], []
    for p in positions:
        a, b = _neighbours(p, len(crops))
        base = clips[p // cfg.clip_len].clone()
        base[:, p % cfg.clip_len] = (frames[a] + frames[b]) / 2  # only frame p differs
        x.append(clips[p // cfg.clip_len])
        baseline.append(base)
    owner = torch.tensor([p // cfg.clip_len for p in positions], device=device)
    fn = _ContentLogit(networks.content, networks.fusion, content, style, owner)
    attr = IntegratedGradients(fn).attribute(torch.stack(x), baselines=torch.stack(baseline), n_steps=n_steps,
                                             internal_batch_size=max(CONTENT_PASS, len(positions)))
    slices = torch.stack([attr[j, :, p % cfg.clip_len].sum(0) for j, p in enumerate(positions)])  # [k, s, s]
    size = cfg.face_size
    return nn.functional.interpolate(slices[:, None], size=(size, size), mode="bilinear",
                                     align_corners=False)[:, 0].detach()


def frame_heatmaps(networks: Explainable, crops: np.ndarray, content: torch.Tensor,
                   style: torch.Tensor, frames: Sequence[int], *, source_indices: Sequence[int] | None = None,
                   max_frames: int = DEFAULT_MAX_FRAMES, n_steps: int = DEFAULT_STEPS,
                   frames_per_pass: int = 2, progress: ProgressFn | None = None,
                   allow_untrained: bool = False) -> list[FrameHeatmap]:
    """Style and content heatmaps of chosen frames of one segment (method: module docstring).

    Args:
        networks: a detector, or its pieces (:class:`Networks`): the ``style``, ``content`` and
            ``fusion`` networks, their ``config`` and ``device``. Weights and modes are left as they
            were; attributions run in float32 whatever precision the owner runs in.
        crops: ``[T, S, S, 3]`` uint8 face crops of the segment.
        content, style: the segment's features (``[C, Dc]``, ``[T, L, Ds]``), the ones its verdict
            came from: every frame's latent but the explained one stays as extracted.
        frames: positions (0..T-1) to explain, e.g. ``contributions.top_frames(4)``.
        source_indices: ``[T]`` frame numbers in the video, copied into the records.
        max_frames: refuse more frames than this (each costs ``2 * n_steps`` passes per extractor).
        n_steps: integration steps of Integrated Gradients.
        frames_per_pass: frames attributed together (with their ``n_steps`` each).
        progress: called as ``progress(done, total)`` in frames after each group.
        allow_untrained: explain an untrained head anyway (benchmarks, tests).

    Raises:
        EvidenceUnavailable: the head is untrained and ``allow_untrained`` is False.
        ImportError: captum is not installed (``pip install 'stylefusion[explain]'``).
        ValueError: bad shapes, positions, or more than ``max_frames`` frames.
    """
    if not allow_untrained:
        require_trained(networks.config)
    cfg = networks.config
    t = cfg.num_frames
    if crops.ndim != 4 or crops.shape[0] != t or crops.shape[1:] != (cfg.face_size, cfg.face_size, 3):
        raise ValueError(f"expected crops [{t}, {cfg.face_size}, {cfg.face_size}, 3], got {list(crops.shape)}")
    if tuple(content.shape) != (cfg.num_clips, cfg.content_dim) or style.shape[0] != t or style.ndim != 3:
        raise ValueError(f"expected content [{cfg.num_clips}, {cfg.content_dim}] and style [{t}, L, Ds], "
                         f"got {list(content.shape)} and {list(style.shape)}")
    positions = [int(p) for p in frames]
    if any(not 0 <= p < t for p in positions):
        raise ValueError(f"frame positions {positions} must be in [0, {t - 1}]")
    if len(positions) > max_frames:
        raise ValueError(f"{len(positions)} frames asked for, at most max_frames={max_frames}: each costs "
                         f"{2 * n_steps} passes per extractor")
    try:
        import captum  # noqa: F401
    except ImportError as exc:
        raise ImportError("heatmaps need captum: pip install 'stylefusion[explain]'") from exc
    report = progress or (lambda done, total: None)
    out: list[FrameHeatmap] = []
    with _attribution_mode(networks):
        device = networks.device
        x = torch.from_numpy(np.ascontiguousarray(crops))
        # clone(): the caller's features may be inference tensors, which autograd cannot save.
        c = content.detach().to(device, torch.float32).clone()
        s = style.detach().to(device, torch.float32).clone()
        step = max(1, frames_per_pass)
        for start in range(0, len(positions), step):
            group = positions[start:start + step]
            style_maps = _style_maps(networks, x, c, s, group, n_steps).float().cpu().numpy()
            content_maps = _content_maps(networks, x, c, s, group, n_steps).float().cpu().numpy()
            for j, p in enumerate(group):
                out.append(FrameHeatmap(
                    position=p, source_index=-1 if source_indices is None else int(source_indices[p]),
                    clip=p // cfg.clip_len, style=style_maps[j], content=content_maps[j],
                    method=METHOD.replace(f"n_steps={DEFAULT_STEPS}", f"n_steps={n_steps}")))
            report(len(out), len(positions))
    return out


def fp32_features(networks: Explainable, crops: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``([C, Dc], [T, L, Ds])`` features of one segment's crops in float32 (no autocast), whatever
    the owner's precision: what :func:`explain_segment` explains when no features are given."""
    cfg, device = networks.config, networks.device
    x = torch.from_numpy(np.ascontiguousarray(crops))
    kind = device.type if device.type in ("cpu", "cuda") else "cpu"
    with torch.inference_mode(), torch.autocast(kind, enabled=False), _eval_mode(networks.style, networks.content):
        style = torch.cat([networks.style(style_inputs(x[i:i + STYLE_PASS], cfg, device)).float()
                           for i in range(0, len(x), STYLE_PASS)])
        clips = content_clips(x, cfg, device)
        content = torch.cat([networks.content(clips[i:i + CONTENT_PASS]).float()
                             for i in range(0, len(clips), CONTENT_PASS)])
    return content.cpu(), style.cpu()


def explain_segment(networks: Explainable, crops: np.ndarray, content: torch.Tensor | None = None,
                    style: torch.Tensor | None = None, *, source_indices: Sequence[int] | None = None,
                    max_frames: int = DEFAULT_MAX_FRAMES, n_steps: int = DEFAULT_STEPS,
                    progress: ProgressFn | None = None, allow_untrained: bool = False) -> SegmentEvidence:
    """Frame and clip contributions of one segment, and heatmaps of its ``max_frames`` frames that
    pushed most toward "fake".

    ``content`` / ``style`` default to float32 features of ``crops`` (:func:`fp32_features`); give
    the ones the verdict came from to explain that verdict. Arguments as :func:`frame_heatmaps`.

    Raises:
        EvidenceUnavailable: the head is untrained and ``allow_untrained`` is False.
    """
    if not allow_untrained:
        require_trained(networks.config)
    if content is None or style is None:
        content, style = fp32_features(networks, crops)
    contributions = frame_contributions(networks.fusion, content, style)
    chosen = contributions.top_frames(max_frames).tolist()
    logger.debug("explaining frames %s (contributions %s) of a segment with logit %.3f", chosen,
                 np.round(contributions.frames[chosen], 3).tolist(), contributions.logit)
    heatmaps = frame_heatmaps(networks, crops, content, style, chosen, source_indices=source_indices,
                              max_frames=max_frames, n_steps=n_steps, progress=progress,
                              allow_untrained=allow_untrained)
    return SegmentEvidence(contributions, heatmaps)


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------
#: Colours of the diverging overlay (RGB): toward "fake" and toward "real".
FAKE_RGB, REAL_RGB = (220, 40, 30), (30, 90, 230)


def overlay(crop: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.6, percentile: float = 99.0) -> np.ndarray:
    """A signed heatmap drawn over its crop: red toward "fake", blue toward "real".

    The colour's opacity is ``alpha * |value| / robust max`` (the ``percentile`` of ``|heatmap|``),
    so a pixel without evidence shows the crop unchanged and one outlier pixel does not wash out the
    rest. Signed, because the sign is what the model randomisation check shows to depend on the
    model (module docstring).

    Args:
        crop: ``[S, S, 3]`` uint8 RGB.
        heatmap: ``[H, W]`` float; resized to the crop if needed.

    Returns:
        ``[S, S, 3]`` uint8 RGB.
    """
    import cv2

    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"expected an [S, S, 3] uint8 crop, got {crop.dtype} {list(crop.shape)}")
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if h.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got shape {list(h.shape)}")
    if h.shape != crop.shape[:2]:
        h = cv2.resize(h, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    scale = float(np.percentile(np.abs(h), percentile))
    if scale <= 0:
        return crop.copy()
    weight = (np.clip(np.abs(h) / scale, 0.0, 1.0) * alpha)[..., None]  # [S, S, 1]
    colour = np.where(h[..., None] >= 0, np.array(FAKE_RGB, np.float32), np.array(REAL_RGB, np.float32))
    out = crop.astype(np.float32) * (1 - weight) + colour * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """``[H, W, 3]`` uint8 RGB → PNG bytes."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {rgb.dtype} {list(rgb.shape)}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV refuses only unsupported shapes, checked above
        raise ValueError("OpenCV could not encode the image as PNG")
    return buf.tobytes()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` as a PNG at ``path``, whole or not at all."""
    return atomic_write(path, encode_png(rgb))


#: Said wherever heatmaps are shown: what they are, and what they are not.
HEATMAP_NOTE = ("A heatmap shows which pixels moved the detector's score (red toward fake, blue toward real), "
                "relative to the frame looking like its neighbours; it is not proof of manipulation.")
EVIDENCE_FILE = "evidence.json"


def write_evidence(result: "DetectionResult", folder: str | Path) -> list[Path]:
    """Write a result's evidence: ``evidence.json`` and, for each explained frame, its crop with the
    style and the content heatmap drawn over it.

    ``evidence.json`` holds every judged segment's per-frame and per-clip contributions and, for
    explained segments (``StyleFusionDetector.explain``), the overlays' file names and what each map
    adds up to. PNGs are named ``person_P/wWWW_frame_FF_srcSSSSSS_{style,content}.png``. Every file
    is written whole or not at all.

    Returns:
        The files written, ``evidence.json`` last.
    """
    import json

    folder = Path(folder)
    written: list[Path] = []
    segments = []
    for seg in result.segments:
        if not seg.judged:
            continue
        entry = {"window": seg.window, "person": seg.person, "start_s": seg.start_s, "end_s": seg.end_s,
                 "label": str(seg.label), "p_fake": seg.p_fake,
                 "frames": [{"position": i, "source_index": f.source_index, "timestamp": f.timestamp,
                             "contribution": f.contribution, "attention": f.attention}
                            for i, f in enumerate(seg.frames)],
                 "clip_contributions": seg.clip_contributions, "heatmaps": []}
        for h in seg.heatmaps or []:
            crop = seg.crops[h.position]
            stem = f"person_{seg.person}/w{seg.window:03d}_frame_{h.position:02d}_src{h.source_index:06d}"
            files = {}
            for kind, heatmap in (("style", h.style), ("content", h.content)):
                path = write_png(folder / f"{stem}_{kind}.png", overlay(crop, heatmap))
                written.append(path)
                files[f"{kind}_png"] = str(path.relative_to(folder))
            entry["heatmaps"].append({"position": h.position, "source_index": h.source_index, "clip": h.clip,
                                      "method": h.method, **files, "style_sum": float(h.style.sum()),
                                      "content_sum": float(h.content.sum())})
        segments.append(entry)
    doc = {"path": result.path, "label": str(result.label), "p_fake": result.p_fake, "note": HEATMAP_NOTE,
           "segments": segments}
    written.append(atomic_write(folder / EVIDENCE_FILE, json.dumps(doc, indent=2) + "\n"))
    return written


__all__ = [
    "EVIDENCE_FILE", "HEATMAP_NOTE", "write_evidence", "DEFAULT_MAX_FRAMES", "DEFAULT_STEPS", "METHOD", "UNTRAINED_REASON", "Contributions", "EvidenceUnavailable",
    "Explainable", "FrameHeatmap", "Networks", "SegmentEvidence", "batched_contributions", "encode_png", "explain_segment",
    "fp32_features", "frame_contributions", "frame_heatmaps", "neighbour_fill", "overlay",
    "require_trained", "write_png",
]
