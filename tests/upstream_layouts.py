"""Random checkpoints in the exact upstream layouts, and independent reference forwards.

Everything here is written from ``shared/spec/upstream-checkpoints.md`` and deliberately does NOT
use ``stylefusion.models``: the key names, shapes and dtypes come from the spec's tables (§1.5,
§2.3), and the reference forwards use ``torch.nn.functional`` on those dicts directly, so a
mistake in our modules cannot hide behind the same mistake in the test data.

``width``/``units``/``depths`` make tiny variants; the defaults are the released sizes.
``init="empty"`` skips random filling (for key/size checks on the full 1 GB pSp layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

N_STYLES = 18
PSP_UNITS = (3, 4, 14, 3)
SLOW_R50_DEPTHS = (3, 4, 6, 3)


class _Filler:
    """Random tensors with sane scales (so deep nets neither explode nor vanish)."""

    def __init__(self, seed: int, init: str):
        self.g = torch.Generator().manual_seed(seed)
        self.init = init

    def _randn(self, *shape: int) -> torch.Tensor:
        if self.init == "empty":
            return torch.empty(*shape)
        return torch.randn(*shape, generator=self.g)

    def conv(self, *shape: int) -> torch.Tensor:
        """He-like scale 1/sqrt(fan_in), so activations stay O(1) through 50 layers."""
        if self.init == "empty":
            return torch.empty(*shape)
        return self._randn(*shape) / math.sqrt(math.prod(shape[1:]))

    def vec(self, n: int, mean: float = 0.0, std: float = 0.1) -> torch.Tensor:
        return torch.empty(n) if self.init == "empty" else self._randn(n) * std + mean

    def raw(self, *shape: int) -> torch.Tensor:
        return self._randn(*shape)

    def bn(self, sd: dict[str, Any], prefix: str, n: int, counters: bool) -> None:
        sd[f"{prefix}.weight"] = self.vec(n, 1.0, 0.1)
        sd[f"{prefix}.bias"] = self.vec(n, 0.0, 0.1)
        sd[f"{prefix}.running_mean"] = self.vec(n, 0.0, 0.1)
        if self.init == "empty":
            sd[f"{prefix}.running_var"] = torch.empty(n)
        else:
            sd[f"{prefix}.running_var"] = torch.rand(n, generator=self.g) + 0.5
        if counters:
            sd[f"{prefix}.num_batches_tracked"] = torch.tensor(123456, dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# pSp (spec §1)
# ----------------------------------------------------------------------------------------------
def psp_units(width: int = 64, units: Sequence[int] = PSP_UNITS) -> list[tuple[int, int, int]]:
    """(in_channel, depth, stride) of every flat ``body.{i}`` unit (spec §1.4.2)."""
    out, cin = [], width
    for stage, n in enumerate(units):
        depth = width * 2 ** stage
        for u in range(n):
            out.append((cin, depth, 2 if u == 0 else 1))
            cin = depth
    return out


def psp_style_spatial(level: int, input_size: int = 256) -> int:
    """Side of the map style ``level`` reads: c3 (S/16), p2 (S/8) or p1 (S/4) (spec §1.4.4)."""
    return input_size // 16 if level < 3 else input_size // 8 if level < 7 else input_size // 4


def psp_encoder_state(width: int = 64, units: Sequence[int] = PSP_UNITS, input_size: int = 256,
                      seed: int = 0, init: str = "random") -> dict[str, torch.Tensor]:
    """``GradualStyleEncoder`` state dict (names without the ``encoder.`` prefix), spec §1.5."""
    f = _Filler(seed, init)
    sd: dict[str, torch.Tensor] = {}
    sd["input_layer.0.weight"] = f.conv(width, 3, 3, 3)
    f.bn(sd, "input_layer.1", width, True)
    sd["input_layer.2.weight"] = f.vec(width, 0.25, 0.05)
    for i, (cin, d, _stride) in enumerate(psp_units(width, units)):
        p = f"body.{i}"
        if cin != d:
            sd[f"{p}.shortcut_layer.0.weight"] = f.conv(d, cin, 1, 1)
            f.bn(sd, f"{p}.shortcut_layer.1", d, True)
        f.bn(sd, f"{p}.res_layer.0", cin, True)
        sd[f"{p}.res_layer.1.weight"] = f.conv(d, cin, 3, 3)
        sd[f"{p}.res_layer.2.weight"] = f.vec(d, 0.25, 0.05)
        sd[f"{p}.res_layer.3.weight"] = f.conv(d, d, 3, 3)
        f.bn(sd, f"{p}.res_layer.4", d, True)
        r = max(1, d // 16)
        sd[f"{p}.res_layer.5.fc1.weight"] = f.conv(r, d, 1, 1)
        sd[f"{p}.res_layer.5.fc2.weight"] = f.conv(d, r, 1, 1)
    dim = width * 8
    sd["latlayer1.weight"] = f.conv(dim, width * 4, 1, 1)
    sd["latlayer1.bias"] = f.vec(dim)
    sd["latlayer2.weight"] = f.conv(dim, width * 2, 1, 1)
    sd["latlayer2.bias"] = f.vec(dim)
    for s in range(N_STYLES):
        for k in range(int(math.log2(psp_style_spatial(s, input_size)))):
            sd[f"styles.{s}.convs.{2 * k}.weight"] = f.conv(dim, dim, 3, 3)
            sd[f"styles.{s}.convs.{2 * k}.bias"] = f.vec(dim)
        sd[f"styles.{s}.linear.weight"] = f.raw(dim, dim)  # EqualLinear: randn, scaled at run time
        sd[f"styles.{s}.linear.bias"] = f.vec(dim)
    return sd


def psp_decoder_sample(dim: int = 512, seed: int = 1) -> dict[str, torch.Tensor]:
    """A few rosinality StyleGAN2 ``decoder.*`` keys (spec §1.9): enough to prove they are dropped."""
    g = torch.Generator().manual_seed(seed)
    return {
        "decoder.style.1.weight": torch.randn(dim, dim, generator=g),
        "decoder.style.1.bias": torch.zeros(dim),
        "decoder.input.input": torch.randn(1, dim, 4, 4, generator=g),
        "decoder.conv1.conv.weight": torch.randn(1, dim, dim, 3, 3, generator=g),
        "decoder.convs.0.conv.blur.kernel": torch.ones(4, 4) / 16,
        "decoder.noises.noise_0": torch.randn(1, 1, 4, 4, generator=g),
    }


def psp_checkpoint(width: int = 64, units: Sequence[int] = PSP_UNITS, input_size: int = 256,
                   seed: int = 0, init: str = "random", latent_avg_shape: str = "18xD",
                   with_latent_avg: bool = True) -> dict[str, Any]:
    """A whole pSp ``.pt`` dict: ``state_dict`` (encoder.* + decoder.*), ``opts``, ``latent_avg``."""
    enc = psp_encoder_state(width, units, input_size, seed, init)
    dim = width * 8
    state = {f"encoder.{k}": v for k, v in enc.items()}
    state.update(psp_decoder_sample(dim, seed + 1))
    opts = {"exp_dir": "/tmp/exp", "dataset_type": "ffhq_encode", "encoder_type": "GradualStyleEncoder",
            "input_nc": 3, "label_nc": 0, "batch_size": 8, "learning_rate": 0.0001, "optim_name": "ranger",
            "start_from_latent_avg": True, "lpips_lambda": 0.8, "l2_lambda": 1.0, "id_lambda": 0.1,
            "checkpoint_path": None, "device": "cuda:0", "stylegan_weights": "pretrained_models/x.pt"}
    ckpt: dict[str, Any] = {"state_dict": state, "opts": opts}
    if with_latent_avg:
        g = torch.Generator().manual_seed(seed + 2)
        row = torch.randn(dim, generator=g)
        ckpt["latent_avg"] = {"D": row, "18xD": row.repeat(N_STYLES, 1),
                              "1x18xD": row.repeat(1, N_STYLES, 1)}[latent_avg_shape]
    return ckpt


def psp_level9_subset_keys(enc: dict[str, torch.Tensor]) -> list[str]:
    """The spec §1.7 subset for style 9: input_layer, body, both latlayers, styles.9."""
    return [k for k in enc if not k.startswith("styles.") or k.startswith("styles.9.")]


# ----------------------------------------------------------------------------------------------
# PyTorchVideo slow_r50 (spec §2)
# ----------------------------------------------------------------------------------------------
def slow_r50_model_state(width: int = 64, depths: Sequence[int] = SLOW_R50_DEPTHS, seed: int = 0,
                         counters: bool = True, num_classes: int = 400,
                         init: str = "random") -> dict[str, torch.Tensor]:
    """``model_state`` of ``create_resnet(stem (1,7,7), head pool (8,7,7), depth 50)``, spec §2.3."""
    f = _Filler(seed, init)
    sd: dict[str, torch.Tensor] = {}
    sd["blocks.0.conv.weight"] = f.conv(width, 3, 1, 7, 7)
    f.bn(sd, "blocks.0.norm", width, counters)
    dim_in = width
    for s, depth in enumerate(depths, start=1):
        inner = width * 2 ** (s - 1)
        out = inner * 4
        kt = 3 if s >= 3 else 1
        for j in range(depth):
            p = f"blocks.{s}.res_blocks.{j}"
            if j == 0:
                sd[f"{p}.branch1_conv.weight"] = f.conv(out, dim_in, 1, 1, 1)
                f.bn(sd, f"{p}.branch1_norm", out, counters)
            sd[f"{p}.branch2.conv_a.weight"] = f.conv(inner, dim_in if j == 0 else out, kt, 1, 1)
            f.bn(sd, f"{p}.branch2.norm_a", inner, counters)
            sd[f"{p}.branch2.conv_b.weight"] = f.conv(inner, inner, 1, 3, 3)
            f.bn(sd, f"{p}.branch2.norm_b", inner, counters)
            sd[f"{p}.branch2.conv_c.weight"] = f.conv(out, inner, 1, 1, 1)
            f.bn(sd, f"{p}.branch2.norm_c", out, counters)
        dim_in = out
    sd["blocks.5.proj.weight"] = f.conv(num_classes, dim_in)
    sd["blocks.5.proj.bias"] = f.vec(num_classes)
    return sd


def slow_r50_checkpoint(width: int = 64, depths: Sequence[int] = SLOW_R50_DEPTHS, seed: int = 0,
                        counters: bool = True, init: str = "random") -> dict[str, Any]:
    """A PySlowFast ``.pyth`` dict: ``epoch``, ``model_state``, ``optimizer_state``, ``cfg`` (spec §2.1)."""
    return {
        "epoch": 196,
        "model_state": slow_r50_model_state(width, depths, seed, counters, init=init),
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]},
        "cfg": "TRAIN:\n  DATASET: kinetics\nMODEL:\n  ARCH: slow\n  NUM_CLASSES: 400\n",
    }


# ----------------------------------------------------------------------------------------------
# independent reference forwards (functional, straight from the spec's formulas)
# ----------------------------------------------------------------------------------------------
def _bn(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                        sd[f"{p}.bias"], training=False, momentum=0.0, eps=1e-5)


def slow_r50_reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """blocks.0-4 of slow_r50 + global mean over T,H,W, from a ``model_state`` dict."""
    x = F.conv3d(x, sd["blocks.0.conv.weight"], stride=(1, 2, 2), padding=(0, 3, 3))
    x = F.max_pool3d(F.relu(_bn(x, sd, "blocks.0.norm")), (1, 3, 3), (1, 2, 2), (0, 1, 1))
    s = 1
    while f"blocks.{s}.res_blocks.0.branch2.conv_a.weight" in sd:
        j = 0
        while f"blocks.{s}.res_blocks.{j}.branch2.conv_a.weight" in sd:
            p = f"blocks.{s}.res_blocks.{j}"
            st = 2 if (s > 1 and j == 0) else 1
            wa = sd[f"{p}.branch2.conv_a.weight"]
            kt = wa.shape[2]
            a = F.relu(_bn(F.conv3d(x, wa, padding=(kt // 2, 0, 0)), sd, f"{p}.branch2.norm_a"))
            b = F.conv3d(a, sd[f"{p}.branch2.conv_b.weight"], stride=(1, st, st), padding=(0, 1, 1))
            b = F.relu(_bn(b, sd, f"{p}.branch2.norm_b"))
            c = _bn(F.conv3d(b, sd[f"{p}.branch2.conv_c.weight"]), sd, f"{p}.branch2.norm_c")
            if f"{p}.branch1_conv.weight" in sd:
                sc = _bn(F.conv3d(x, sd[f"{p}.branch1_conv.weight"], stride=(1, st, st)), sd, f"{p}.branch1_norm")
            else:
                sc = x
            x = F.relu(sc + c)
            j += 1
        s += 1
    return x.mean(dim=(2, 3, 4))


def equal_linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Spec §1.4.6 with lr_mul=1: y = x (W / sqrt(in))^T + b."""
    return x @ (weight * (1.0 / math.sqrt(weight.shape[1]))).t() + bias


def psp_reference(enc: dict[str, torch.Tensor], latent_avg: torch.Tensor, x: torch.Tensor,
                  levels: Sequence[int], units: Sequence[int] = PSP_UNITS) -> torch.Tensor:
    """pSp codes ``[B, len(levels), D]`` (+ latent_avg rows) from an ``encoder.*``-stripped dict."""
    x = F.conv2d(x, enc["input_layer.0.weight"], padding=1)
    x = F.prelu(_bn(x, enc, "input_layer.1"), enc["input_layer.2.weight"])
    taps = []
    i = 0
    for n in units:
        for u in range(n):
            p, st = f"body.{i}", (2 if u == 0 else 1)
            if f"{p}.shortcut_layer.0.weight" in enc:
                sc = _bn(F.conv2d(x, enc[f"{p}.shortcut_layer.0.weight"], stride=st), enc, f"{p}.shortcut_layer.1")
            else:
                sc = x[:, :, ::st, ::st]  # MaxPool2d(1, stride)
            r = _bn(x, enc, f"{p}.res_layer.0")
            r = F.prelu(F.conv2d(r, enc[f"{p}.res_layer.1.weight"], padding=1), enc[f"{p}.res_layer.2.weight"])
            r = _bn(F.conv2d(r, enc[f"{p}.res_layer.3.weight"], stride=st, padding=1), enc, f"{p}.res_layer.4")
            gate = F.conv2d(F.relu(F.conv2d(r.mean(dim=(2, 3), keepdim=True), enc[f"{p}.res_layer.5.fc1.weight"])),
                            enc[f"{p}.res_layer.5.fc2.weight"])
            x = r * torch.sigmoid(gate) + sc
            i += 1
        taps.append(x)
    _, c1, c2, c3 = taps
    p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + F.conv2d(
        c2, enc["latlayer1.weight"], enc["latlayer1.bias"])
    p1 = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + F.conv2d(
        c1, enc["latlayer2.weight"], enc["latlayer2.bias"])
    dim = c3.shape[1]
    avg = latent_avg.reshape(-1, dim).expand(N_STYLES, dim)  # [D], [18,D], [1,18,D] -> [18,D]
    codes = []
    for s in levels:
        h = c3 if s < 3 else p2 if s < 7 else p1
        k = 0
        while f"styles.{s}.convs.{k}.weight" in enc:
            h = F.leaky_relu(F.conv2d(h, enc[f"styles.{s}.convs.{k}.weight"], enc[f"styles.{s}.convs.{k}.bias"],
                                      stride=2, padding=1), 0.01)
            k += 2
        h = h.flatten(1)
        codes.append(equal_linear_reference(h, enc[f"styles.{s}.linear.weight"],
                                            enc[f"styles.{s}.linear.bias"]) + avg[s])
    return torch.stack(codes, dim=1)
