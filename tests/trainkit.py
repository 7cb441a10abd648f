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


def calibrated_checkpoint(out: Path, sample_videos: list[str], seed: int = 0) -> None:
    """A tiny random checkpoint whose features have a trained backbone's scale (see module doc)."""
    from stylefusion.detector import StyleFusionDetector, init_checkpoint

    # 64-px crops keep the style encoder fast; the style-flow head input (Choi et al. 2024) makes the
    # frame-to-frame inconsistency learnable from 16 training videos.
    init_checkpoint("tiny", out, seed, face_size=64, min_person_frames=0, style_diff=True)
    det = StyleFusionDetector.from_pretrained(out)
    feats = [det.extract_features(v) for v in sample_videos]
    style = torch.cat([f.style for f in feats])  # [N*T, L, D]
    content = torch.cat([f.content for f in feats])  # [N*C, Dc]
    calibrate_backbones(det, style, content)
    det.save_pretrained(out)
