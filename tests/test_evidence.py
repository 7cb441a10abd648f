"""Evidence (stylefusion.evidence): exact occlusion arithmetic, and the sanity checks of Adebayo et al.

Unit tests check the temporal occlusion against direct computations on toy heads, batching, the
bounds and refusals, and that attribution leaves the detector as it found it. The sanity checks run
on a tiny detector trained here: generated 64x64 crops (a face-like ellipse, noise, slight motion)
go through the real tiny extractors (backbones rescaled to a trained backbone's feature scale:
``trainkit.calibrate_backbones``), and a head is trained on 32 real and 32 fake segments whose fakes
carry a *planted signal*: a checkerboard patch on one cheek (rows 36-49, columns 10-23: 4.8% of the
crop) flickering in counter-phase in sampled frames 10-14 only. The checks: the explanation finds
the planted frames and region, and it changes when the head is re-initialised.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from stylefusion import evidence as ev
from stylefusion.config import TrainingRecord, preset_config
from stylefusion.models.fusion import FusionHead
from stylefusion.transforms import style_inputs

S, T = 64, 32
PLANTED = range(10, 15)
REGION = (slice(36, 50), slice(10, 24))  # a cheek, in crop pixels


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_detector(seed: int = 0, trained: bool = False):
    """The tiny preset at 64-px crops (content at 64 px too), frame differences into the StyleGRU."""
    from stylefusion.detector import StyleFusionDetector

    torch.manual_seed(seed)
    config = preset_config("tiny", face_size=S, content_size=S, min_person_s=0, style_diff=True)
    if trained:
        config = config.replace(trained=True, training=TrainingRecord(data_summary="planted-signal test videos"))
    return StyleFusionDetector(config, precision="fp32").eval()


def segment_crops(fake: bool, seed: int) -> np.ndarray:
    """``[T, S, S, 3]`` uint8 crops; fakes flicker a checkerboard on the cheek in PLANTED frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    base, grad = rng.uniform(40, 200, 3), rng.uniform(-60, 60, (2, 3))
    colour, (cx, cy) = rng.uniform(80, 220, 3), rng.uniform(0.45, 0.55, 2)
    texture = rng.normal(0, 12, (S, S, 1))
    amplitude = rng.uniform(30, 60)
    rows, cols = REGION
    check = np.add.outer(np.arange(rows.stop - rows.start), np.arange(cols.stop - cols.start)) % 2
    out = np.empty((T, S, S, 3), np.uint8)
    for t in range(T):
        img = base + grad[0] * xx[..., None] + grad[1] * yy[..., None]
        face = (((xx - cx - 0.01 * np.sin(t / 5)) / 0.32) ** 2 + ((yy - cy) / 0.42) ** 2) < 1
        img[face] = colour + texture[face]
        img = img + rng.normal(0, 1.5, (S, S, 1))
        if fake and t in PLANTED:
            phase = (check + t) % 2  # counter-phase from frame to frame: a flicker
            img[rows, cols] += (phase[..., None] * 2 - 1) * amplitude + rng.uniform(-0.6, 0.6, 3) * amplitude
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def features(det, crops: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The real extractors: ([N, C, Dc], [N, T, L, Ds]), as normal tensors."""
    content = torch.stack([det.content_features(c) for c in crops]).clone()
    style = torch.stack([det.style_features(c) for c in crops]).clone()
    return content, style


def train_head(head, content, style, labels, epochs: int = 60, seed: int = 0) -> None:
    """A short loop with the report's mixup (probability 0.7), which keeps the head's logit graded
    in its evidence instead of a step: AdamW, batches of 16."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    head.train()
    for _ in range(epochs):
        perm = torch.randperm(len(labels), generator=gen)
        for b in range(0, len(labels), 16):
            idx = perm[b:b + 16]
            c, s, y = content[idx], style[idx], labels[idx]
            if rng.random() < 0.7:
                lam, other = float(rng.beta(0.4, 0.4)), torch.randperm(len(idx), generator=gen)
                c, s, y = lam * c + (1 - lam) * c[other], lam * s + (1 - lam) * s[other], lam * y + (1 - lam) * y[other]
            loss = loss_fn(head(c, s).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()


def region_mass(maps: np.ndarray, positive: bool = True) -> np.ndarray:
    """Per map: share of its positive (or absolute) mass inside REGION / REGION's area share."""
    mask = np.zeros((S, S), bool)
    mask[REGION] = True
    m = np.clip(maps, 0, None) if positive else np.abs(maps)
    return m[:, mask].sum(-1) / m.reshape(len(m), -1).sum(-1) / mask.mean()


# ----------------------------------------------------------------------------------------------
# Temporal occlusion: exact arithmetic
# ----------------------------------------------------------------------------------------------
class _Out:
    def __init__(self, logits):
        self.logits = logits


class FrameHead(torch.nn.Module):
    """Reads only frame ``k``'s latent (and clip ``c``'s content vector) linearly."""

    def __init__(self, k: int, c: int, dim_s: int, dim_c: int):
        super().__init__()
        self.k, self.c = k, c
        self.ws = torch.nn.Parameter(torch.linspace(-1, 1, dim_s))
        self.wc = torch.nn.Parameter(torch.linspace(1, 2, dim_c))

    def forward(self, content, style):
        return _Out((style[:, self.k, 0] * self.ws).sum(-1) + (content[:, self.c] * self.wc).sum(-1))


def test_neighbour_fill_interpolates_and_uses_the_one_neighbour_at_the_ends():
    x = torch.arange(5.0).view(1, 5, 1) ** 2  # 0 1 4 9 16
    assert ev.neighbour_fill(x).flatten().tolist() == [1.0, 2.0, 5.0, 10.0, 9.0]
    pair = torch.tensor([[[3.0], [7.0]]])
    assert ev.neighbour_fill(pair).flatten().tolist() == [7.0, 3.0]  # two clips: the other one
    assert ev.neighbour_fill(torch.ones(1, 1, 2)).tolist() == [[[1.0, 1.0]]]


@pytest.mark.parametrize("k", [0, 7, T - 1])
def test_a_head_reading_one_frame_gets_contribution_from_that_frame_only(k):
    gen = torch.Generator().manual_seed(k)
    content, style = torch.randn(2, 6, generator=gen), torch.randn(T, 1, 4, generator=gen)
    head = FrameHead(k, 1, 4, 6)
    out = ev.frame_contributions(head, content, style)
    with torch.no_grad():
        logit = float(head(content[None], style[None]).logits[0])
        before, after = (1, 1) if k == 0 else (T - 2, T - 2) if k == T - 1 else (k - 1, k + 1)
        expected = float(((style[k, 0] - (style[before, 0] + style[after, 0]) / 2) * head.ws).sum())
        expected_clip = float(((content[1] - content[0]) * head.wc).sum())  # clip 1 → clip 0
    assert out.logit == pytest.approx(logit, abs=1e-5)
    assert out.frames.shape == (T,) and out.frames.dtype == np.float32 and out.clips.shape == (2,)
    assert out.frames[k] == pytest.approx(expected, abs=1e-5)
    assert np.count_nonzero(np.delete(out.frames, k)) == 0
    assert out.clips[1] == pytest.approx(expected_clip, abs=1e-5) and out.clips[0] == 0
    if expected > 0:
        assert out.top_frames(1).tolist() == [k]


def test_clip_contributions_use_the_mean_of_neighbouring_clips():
    gen = torch.Generator().manual_seed(3)
    content, style = torch.randn(4, 5, generator=gen), torch.randn(8, 1, 3, generator=gen)
    head = FrameHead(0, 2, 3, 5)
    out = ev.frame_contributions(head, content, style)
    with torch.no_grad():
        expected = float(((content[2] - (content[1] + content[3]) / 2) * head.wc).sum())
    assert out.clips[2] == pytest.approx(expected, abs=1e-5)
    assert out.clips[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]


def test_batched_contributions_equal_one_at_a_time_and_leave_the_head_in_its_mode():
    config = preset_config("tiny", style_diff=True)
    torch.manual_seed(0)
    head = FusionHead(config).train()  # dropout on: the occlusion must switch it off and back
    gen = torch.Generator().manual_seed(1)
    content = torch.randn(3, config.num_clips, config.content_dim, generator=gen)
    style = torch.randn(3, config.num_frames, 1, config.style_dim, generator=gen)
    batched = ev.batched_contributions(head, content, style)
    assert head.training and all(m.training for m in head.modules())
    for i, b in enumerate(batched):
        single = ev.frame_contributions(head, content[i], style[i])
        assert b.logit == pytest.approx(single.logit, abs=1e-4)
        np.testing.assert_allclose(b.frames, single.frames, atol=1e-4)
        np.testing.assert_allclose(b.clips, single.clips, atol=1e-4)
        with torch.no_grad():
            assert b.logit == pytest.approx(float(head.eval()(content[i:i + 1], style[i:i + 1]).logits[0]), abs=1e-4)
        head.train()
    with pytest.raises(ValueError, match="expected content"):
        ev.batched_contributions(head, content[0], style)


# ----------------------------------------------------------------------------------------------
# Refusals, bounds, and a detector left as it was found
# ----------------------------------------------------------------------------------------------
def test_an_untrained_head_is_refused_with_a_one_line_reason():
    pytest.importorskip("captum")
    det = tiny_detector()
    crops = segment_crops(False, 0)
    with pytest.raises(ev.EvidenceUnavailable) as info:
        ev.explain_segment(det, crops)
    assert str(info.value) == ev.UNTRAINED_REASON and "\n" not in str(info.value)
    assert "untrained" in str(info.value)
    content, style = ev.fp32_features(det, crops)
    with pytest.raises(ev.EvidenceUnavailable):
        ev.frame_heatmaps(det, crops, content, style, [3])
    with pytest.raises(ev.EvidenceUnavailable):
        ev.require_trained(det.config)
    ev.require_trained(tiny_detector(trained=True).config)  # no error


def test_heatmaps_are_fp32_whatever_the_caller_runs_under_and_leave_the_detector_unchanged():
    pytest.importorskip("captum")
    det = tiny_detector(seed=1)
    det.style.train()  # a caller's odd mode must come back as it was
    crops = segment_crops(True, 7)
    content, style = ev.fp32_features(det, crops)
    state = {k: v.clone() for k, v in det.state_dict().items()}
    modes = [m.training for m in det.modules()]
    calls = []
    kwargs = dict(source_indices=np.arange(T) * 3 + 5, allow_untrained=True, progress=lambda d, n: calls.append((d, n)))
    plain = ev.frame_heatmaps(det, crops, content, style, [0, 12, 31], max_frames=3, **kwargs)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        inside = ev.frame_heatmaps(det, crops, content, style, [0, 12, 31], max_frames=3, **kwargs)
    assert calls == [(2, 3), (3, 3)] * 2
    for a, b in zip(plain, inside):
        assert a.style.dtype == np.float32 and a.style.shape == (S, S) and a.content.shape == (S, S)
        np.testing.assert_allclose(a.style, b.style, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.content, b.content, rtol=1e-4, atol=1e-6)
        assert a.method == ev.METHOD and np.abs(a.style).sum() > 0 and np.abs(a.content).sum() > 0
    assert [(h.position, h.source_index, h.clip) for h in plain] == [(0, 5, 0), (12, 41, 0), (31, 98, 1)]
    assert [m.training for m in det.modules()] == modes
    assert all(torch.equal(v, det.state_dict()[k]) for k, v in state.items())
    assert not any(p.grad is not None for p in det.parameters())

    # Completeness of Integrated Gradients: the style map of frame 12 sums to the logit change of
    # putting its neighbours' mean crop in its place.
    det.eval()
    with torch.no_grad():
        x = style_inputs(crops[[11, 12, 13]], det.config)
        latents = det.style(torch.stack([x[1], (x[0] + x[2]) / 2]))
        both = style[None].repeat(2, 1, 1, 1)
        both[:, 12] = latents
        logits = det.fusion(content[None].repeat(2, 1, 1), both).logits
    assert plain[1].style.sum() == pytest.approx(float(logits[0] - logits[1]), rel=0.05, abs=1e-3)


def test_evidence_takes_the_networks_not_the_detector():
    """No import circle: the evidence reads the three networks, the config and the device (a
    detector, or :class:`~stylefusion.evidence.Networks` built from its pieces) and never imports
    the detector module, not even for annotations."""
    import ast
    import inspect

    pytest.importorskip("captum")
    tree = ast.parse(inspect.getsource(ev))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "stylefusion.detector" not in imported and "stylefusion" not in imported
    det = tiny_detector(seed=2, trained=True)
    pieces = ev.Networks(style=det.style, content=det.content, fusion=det.fusion, config=det.config)
    assert pieces.device == det.device
    crops = segment_crops(True, 3)
    content, style = ev.fp32_features(pieces, crops)
    theirs = ev.fp32_features(det, crops)
    assert torch.equal(content, theirs[0]) and torch.equal(style, theirs[1])
    a = ev.explain_segment(pieces, crops, content, style, max_frames=1, n_steps=4)
    b = ev.explain_segment(det, crops, content, style, max_frames=1, n_steps=4)
    assert a.heatmaps[0].position == b.heatmaps[0].position
    np.testing.assert_array_equal(a.heatmaps[0].style, b.heatmaps[0].style)
    np.testing.assert_array_equal(a.heatmaps[0].content, b.heatmaps[0].content)


def test_frames_beyond_the_bound_and_bad_positions_are_refused():
    pytest.importorskip("captum")
    det = tiny_detector(trained=True)
    crops = segment_crops(False, 1)
    content, style = ev.fp32_features(det, crops)
    with pytest.raises(ValueError, match="max_frames=4"):
        ev.frame_heatmaps(det, crops, content, style, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match=r"in \[0, 31\]"):
        ev.frame_heatmaps(det, crops, content, style, [32])
    with pytest.raises(ValueError, match="expected crops"):
        ev.frame_heatmaps(det, crops[:16], content, style, [1])


def test_overlay_draws_signed_evidence_over_the_crop_and_writes_a_png(tmp_path):
    import cv2

    crop = np.full((S, S, 3), 128, np.uint8)
    heat = np.zeros((S, S), np.float32)
    assert np.array_equal(ev.overlay(crop, heat), crop)  # no evidence: the crop unchanged
    heat[:8] = 5.0  # toward fake: red
    heat[-8:] = -5.0  # toward real: blue
    heat[30, 30] = 1e6  # one outlier does not wash out the rest (robust max)
    out = ev.overlay(crop, heat)
    assert out.dtype == np.uint8 and out.shape == crop.shape
    assert out[0, 0, 0] > out[0, 0, 2] + 80 and out[-1, -1, 2] > out[-1, -1, 0] + 80  # red / blue at full opacity
    assert np.array_equal(out[20, 20], crop[20, 20])
    assert ev.overlay(crop, np.ones((16, 16))).shape == crop.shape  # resized to the crop
    path = ev.write_png(tmp_path / "f" / "frame12.png", out)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, out)
    assert [p.name for p in path.parent.iterdir()] == ["frame12.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="uint8"):
        ev.overlay(crop.astype(np.float32), heat)


# ----------------------------------------------------------------------------------------------
# Sanity checks on a trained tiny detector: a planted signal, and a randomised head
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(one_thread):
    """The tiny detector, its head trained on 32 real + 32 fake planted-signal segments, and four
    held-out fakes with their features."""
    from trainkit import calibrate_backbones

    det = tiny_detector(seed=0, trained=True)
    crops = [segment_crops(i % 2 == 1, 1000 + i) for i in range(64)]
    content, style = features(det, crops[:8])
    calibrate_backbones(det, style.flatten(0, 1), content.flatten(0, 1))
    content, style = features(det, crops)
    labels = torch.tensor([float(i % 2) for i in range(64)])
    train_head(det.fusion, content, style, labels)
    fakes = [segment_crops(True, 5000 + i) for i in range(4)]
    fc, fs = features(det, fakes)
    return {"det": det, "crops": fakes, "content": fc, "style": fs}


def _heatmaps(planted, videos, frames):
    det = planted["det"]
    return [ev.frame_heatmaps(det, planted["crops"][v], planted["content"][v], planted["style"][v], frames,
                              max_frames=len(frames)) for v in videos]


def test_top_contributing_frames_are_the_planted_frames(planted):
    det = planted["det"]
    contributions = ev.batched_contributions(det.fusion, planted["content"], planted["style"])
    for c in contributions:
        assert c.logit > 0, "the trained head calls the held-out fakes fake"
        assert set(c.top_frames(3).tolist()) <= set(PLANTED), (c.top_frames(5), c.frames.round(3))


def test_style_heatmaps_of_the_planted_frames_find_the_patch(planted):
    """Every planted frame's style map puts at least twice the patch's area share (4.8%) of its
    *positive* mass (evidence toward "fake") inside the patch (measured: 5x or more)."""
    pytest.importorskip("captum")
    for video in _heatmaps(planted, range(4), list(PLANTED)):
        ratios = region_mass(np.stack([h.style for h in video]))
        assert (ratios >= 2).all(), ratios.round(2)


def test_explain_segment_explains_the_planted_frames(planted):
    pytest.importorskip("captum")
    det = planted["det"]
    done = []
    evidence = ev.explain_segment(det, planted["crops"][0], planted["content"][0], planted["style"][0],
                                  source_indices=np.arange(T), progress=lambda d, n: done.append((d, n)))
    assert [h.position for h in evidence.heatmaps] == evidence.contributions.top_frames(4).tolist()
    assert len(set(h.position for h in evidence.heatmaps) & set(PLANTED)) >= 3
    assert done[-1] == (4, 4)


def test_a_randomised_head_changes_the_contributions_and_the_heatmaps(planted):
    """Model randomisation (Adebayo et al. 2018): the fusion head re-initialised (fresh random init,
    seeds 1-3, same backbones), the explanations of the held-out fakes change: Spearman rank
    correlation with the trained head's on SIGNED values, averaged over the 3 seeds (and the videos,
    frames), below 0.5 — for the frame contributions [T], the style maps and the content maps
    (pixels). Signed, because the maps are shown signed: their absolute values mark where a frame
    differs from its neighbours, a property of the video that any head finds (rho of |maps| about
    0.75; of |contributions| about 0.4-0.5).
    """
    pytest.importorskip("captum")
    det = planted["det"]
    trained_state = {k: v.clone() for k, v in det.fusion.state_dict().items()}
    frames, videos = [10, 12, 14], range(2)
    base_contrib = ev.batched_contributions(det.fusion, planted["content"], planted["style"])
    base_maps = _heatmaps(planted, videos, frames)
    rho = {"contributions": [], "style": [], "content": []}
    try:
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            det.fusion.load_state_dict(FusionHead(det.config).state_dict())
            for a, b in zip(base_contrib, ev.batched_contributions(det.fusion, planted["content"], planted["style"])):
                rho["contributions"].append(spearmanr(a.frames, b.frames)[0])
            for mine, theirs in zip(base_maps, _heatmaps(planted, videos, frames)):
                for a, b in zip(mine, theirs):
                    rho["style"].append(spearmanr(a.style.ravel(), b.style.ravel())[0])
                    rho["content"].append(spearmanr(a.content.ravel(), b.content.ravel())[0])
    finally:
        det.fusion.load_state_dict(trained_state)
    means = {k: float(np.mean(v)) for k, v in rho.items()}
    assert all(m < 0.5 for m in means.values()), means
