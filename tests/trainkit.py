"""Tiny random backbones with a trained backbone's feature scale, for tests that train a head.

Random backbones produce features with a tiny, nearly constant scale (e.g. style latents varying by
1e-4 around a common offset), unlike trained ones (pSp latents vary by ~1). A head trained on such
features learns nothing useful, so tests *calibrate* them: the random style codes are centred and
scaled to unit spread and the content output scaled to unit size, exact rescalings of the final
layers — what trained backbones give.
"""

from __future__ import annotations

from pathlib import Path

import torch


def calibrate_backbones(det, style: torch.Tensor, content: torch.Tensor) -> None:
    """Rescale ``det``'s backbones in place so that features like ``style`` ``[N, L, D]`` (latents of
    N crops) and ``content`` ``[M, Dc]`` (clip vectors) come out centred / unit-scaled."""
    k_s, k_c = 1.0 / style.std(0).mean().item(), 1.0 / content.abs().mean().item()
    state = det.state_dict()
    with torch.no_grad():
        for i, level in enumerate(det.config.style_levels):  # codes = linear(x) + latent_avg
            state[f"style.styles.{level}.linear.weight"] *= k_s
            state[f"style.styles.{level}.linear.bias"] *= k_s
            state["style.latent_avg"][level] = -style[:, i].mean(0) * k_s
        # The tiny trunk's last block is ReLU(branch1_norm(.) + norm_c(.)): scaling both is exact.
        last = max(int(k.split(".")[4]) for k in state if k.startswith("content.blocks.4.res_blocks."))
        for k in state:
            if (k.startswith(f"content.blocks.4.res_blocks.{last}.") and (".norm_c." in k or ".branch1_norm." in k)
                    and k.endswith((".weight", ".bias"))):
                state[k] *= k_c
    det.load_state_dict(state)


def calibrated_checkpoint(out: Path, sample_videos: list[str], seed: int = 0, style_diff: bool = True) -> None:
    """A tiny random checkpoint whose features have a trained backbone's scale (see module doc).

    ``style_diff=False`` gives the head the style latents themselves rather than their frame-to-frame
    differences: what a static artefact (a blend boundary that does not flicker) needs."""
    from stylefusion.detector import StyleFusionDetector, init_checkpoint

    # 64-px crops keep the style encoder fast; the style-flow head input (Choi et al. 2024) makes the
    # frame-to-frame inconsistency learnable from 16 training videos.
    init_checkpoint("tiny", out, seed, face_size=64, min_person_s=0, style_diff=style_diff)
    det = StyleFusionDetector.from_pretrained(out)
    feats = [det.extract_features(v) for v in sample_videos]
    style = torch.cat([f.style for f in feats])  # [N*T, L, D]
    content = torch.cat([f.content for f in feats])  # [N*C, Dc]
    calibrate_backbones(det, style, content)
    det.save_pretrained(out)


def train_on_features(work: Path, content: torch.Tensor, style: torch.Tensor, labels, splits: list[str], *,
                      quality=None, epochs: int = 3, batch_size: int = 4) -> Path:
    """A tiny checkpoint trained by ``stylefusion train`` on a cache of given features (no video is
    decoded): one entry per video, ``content [N, C, Dc]``, ``style [N, T, L, Ds]``, ``labels [N]``,
    ``splits`` ("train"/"val") and optional ``quality [3]`` per video. Returns the trained folder."""
    import numpy as np

    from stylefusion.detector import StyleFusionDetector, init_checkpoint
    from stylefusion.research.cache import FeatureCache, FeatureKey
    from stylefusion.research.manifest import ManifestRecord
    from stylefusion.research.train import main as train_main
    from stylefusion.results import VideoFeatures

    work = Path(work)
    init_checkpoint("tiny", work / "backbones", seed=0)
    det = StyleFusionDetector.from_pretrained(work / "backbones")
    key = FeatureKey.from_model(det, str(work / "backbones"))
    t = det.config.num_frames
    cache = FeatureCache(work / "cache")
    for i, (label, split) in enumerate(zip([int(v) for v in labels], splits)):
        feats = VideoFeatures(content=content[i], style=style[i], source_indices=np.arange(t),
                              timestamps=np.arange(t) / 25.0,
                              boxes=np.tile(np.array([0, 0, 120, 120], np.float32), (t, 1)),
                              probs=np.ones(t, np.float32), fallback=np.zeros(t, bool),
                              quality=None if quality is None else np.asarray(quality, np.float32))
        record = ManifestRecord(f"v{i:02d}", str(work / f"v{i:02d}.mp4"), label, split, "synthetic",
                                "generated" if label else "original")
        cache.write(record, key, feats, fingerprint={"video_size": "1", "video_mtime_ns": "1",
                                                     "video_sha256_headtail": "0" * 64})
    out = work / "trained"
    assert train_main(["--cache", str(cache.root), "--out", str(out), "--epochs", str(epochs), "--batch-size",
                       str(batch_size), "--lr", "3e-3", "--seed", "0", "--threads", "1"]) == 0
    return out
