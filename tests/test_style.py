"""The pSp style encoder: shapes, level subsets, EqualLinear, checkpoint filter, references."""

from __future__ import annotations

import math

import pytest
import torch

import upstream_layouts as U
from stylefusion.config import preset_config
from stylefusion.errors import CheckpointError
from stylefusion.models.style import EqualLinear, StyleEncoder, checkpoint_filter_fn

W, UNITS, S = 8, (1, 1, 1, 1), 64  # tiny: style dim 64, 64x64 input (blocks of 2/3/4 convs)


def _encoder_dict(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}


def _loaded(ckpt: dict, levels, units=UNITS) -> StyleEncoder:
    model = StyleEncoder(W, units, levels, S).eval()
    model.load_state_dict(checkpoint_filter_fn(ckpt, model), strict=True)
    return model


@pytest.mark.parametrize("levels, lat1, lat2", [((0,), False, False), ((0, 2), False, False),
                                                ((3,), True, False), ((9,), True, True),
                                                ((1, 5, 12), True, True)])
def test_builds_only_what_the_levels_need(levels, lat1, lat2):
    model = StyleEncoder(W, UNITS, levels, S).eval()
    assert (model.latlayer1 is not None, model.latlayer2 is not None) == (lat1, lat2)
    assert sorted(model.styles.keys(), key=int) == [str(i) for i in levels]
    with torch.no_grad():
        out = model(torch.randn(2, 3, S, S))
    assert out.shape == (2, len(levels), 8 * W)


def test_tiny_shapes_and_block_depths():
    model = StyleEncoder.full(W, UNITS, S).eval()
    with torch.no_grad():
        maps = model.forward_features(torch.randn(1, 3, S, S))
    # c3 at S/16, p2 at S/8, p1 at S/4, all style_dim channels (spec §1.8, scaled)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "coarse": (1, 64, 4, 4), "middle": (1, 64, 8, 8), "fine": (1, 64, 16, 16)}
    n_convs = {s: sum(1 for m in model.styles[str(s)].convs if isinstance(m, torch.nn.Conv2d)) for s in range(18)}
    assert [n_convs[s] for s in (0, 2, 3, 6, 7, 17)] == [2, 2, 3, 3, 4, 4]
    assert model.latent_avg.shape == (18, 64)
    assert StyleEncoder.from_config(preset_config("tiny")).style_dim == preset_config("tiny").style_dim


def test_full_size_level9_subset_equals_the_spec():
    """403 upstream keys, 45,593,536 float elements (spec §1.7); our dict = that + latent_avg."""
    enc = U.psp_encoder_state(init="empty")
    assert len(enc) == 621  # spec §1.2 encoder total
    subset = U.psp_level9_subset_keys(enc)
    assert len(subset) == 403
    assert sum(enc[k].numel() for k in subset if enc[k].is_floating_point()) == 45_593_536
    with torch.device("meta"):  # keys and shapes only: no 45 M-parameter random init
        model = StyleEncoder()
    ours = model.state_dict()
    assert set(ours) == set(subset) | {"latent_avg"}
    assert all(ours[k].shape == enc[k].shape for k in subset)
    assert sum(v.numel() for k, v in ours.items() if k != "latent_avg" and v.is_floating_point()) == 45_593_536
    ckpt = {"state_dict": {f"encoder.{k}": v for k, v in enc.items()}, "opts": {},
            "latent_avg": torch.zeros(18, 512)}
    model.load_state_dict(checkpoint_filter_fn(ckpt, model), strict=True, assign=True)
    # and the whole 18-level encoder takes all 621 upstream keys
    with torch.device("meta"):  # shapes only: no 1 GB allocation and random init
        full = StyleEncoder.full()
    assert set(full.state_dict()) == set(enc) | {"latent_avg"}
    assert sum(p.numel() for p in full.parameters()) == 267_136_704  # spec §1.2


def test_full_size_forward_shapes():
    """Shapes through the full encoder on the meta device, as the detector calls it (channels-last,
    stems one face at a time); values are checked on the tiny layout against the reference."""
    with torch.device("meta"):
        model = StyleEncoder().eval()
        maps = model.forward_features(torch.randn(1, 3, 256, 256))
        out = model(torch.randn(3, 3, 256, 256).contiguous(memory_format=torch.channels_last), 1)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "coarse": (1, 512, 16, 16), "middle": (1, 512, 32, 32), "fine": (1, 512, 64, 64)}
    assert out.shape == (3, 1, 512)


@pytest.mark.parametrize("units", [UNITS, (2, 1, 3, 1)])
def test_reduced_encoder_equals_full_encoder_at_level_9(units):
    ckpt = U.psp_checkpoint(W, units, S, seed=5)
    reduced, full = _loaded(ckpt, (9,), units), _loaded(ckpt, tuple(range(18)), units)
    x = torch.randn(3, 3, S, S)
    with torch.no_grad():
        a, b = reduced(x), full(x)
    assert b.shape == (3, 18, 64)
    torch.testing.assert_close(a[:, 0], b[:, 9], rtol=0, atol=0)
    # coarse-only and middle-only subsets agree with the full encoder too
    for levels in [(0, 2), (4, 6), (3, 8, 17)]:
        with torch.no_grad():
            part = _loaded(ckpt, levels, units)(x)
        torch.testing.assert_close(part, b[:, list(levels)], rtol=0, atol=0)


@pytest.mark.parametrize("shape", ["D", "18xD", "1x18xD"])
def test_converted_equals_independent_reference(shape):
    ckpt = U.psp_checkpoint(W, UNITS, S, seed=7, latent_avg_shape=shape)
    model = _loaded(ckpt, (3, 9))
    assert model.latent_avg.shape == (18, 64)
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        ours = model(x)
    ref = U.psp_reference(_encoder_dict(ckpt), ckpt["latent_avg"], x, (3, 9), UNITS)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_equal_linear_scale_is_applied_exactly_once():
    torch.manual_seed(0)
    layer = EqualLinear(512, 512)
    x = torch.randn(4, 512)
    expected = x @ (layer.weight.detach() * 0.04419417382).t() + layer.bias.detach()  # spec §1.4.6
    torch.testing.assert_close(layer(x).detach(), expected, rtol=1e-5, atol=1e-5)
    # conversion keeps the raw upstream weight (the scale is not folded in as well)
    ckpt = U.psp_checkpoint(W, UNITS, S)
    sd = checkpoint_filter_fn(ckpt, StyleEncoder(W, UNITS, (9,), S))
    assert torch.equal(sd["styles.9.linear.weight"], ckpt["state_dict"]["encoder.styles.9.linear.weight"])
    assert math.isclose(1 / math.sqrt(512), 0.04419417382, rel_tol=1e-9)


def test_filter_drops_decoder_unused_levels_and_counters():
    ckpt = U.psp_checkpoint(W, UNITS, S)
    model = StyleEncoder(W, UNITS, (0,), S)
    sd = checkpoint_filter_fn(ckpt, model)
    assert not any(k.startswith(("decoder", "latlayer", "styles.9")) for k in sd)
    assert {k.split(".")[1] for k in sd if k.startswith("styles.")} == {"0"}
    assert all(sd[k].item() == 0 for k in sd if k.endswith("num_batches_tracked"))
    assert checkpoint_filter_fn(sd, model) is not sd  # already converted: early return, same values
    assert all(torch.equal(a, b) for a, b in zip(checkpoint_filter_fn(sd, model).values(), sd.values()))


def test_filter_errors_name_the_problem():
    model = StyleEncoder(W, UNITS, (9,), S)
    good = U.psp_checkpoint(W, UNITS, S)

    no_avg = {k: v for k, v in good.items() if k != "latent_avg"}
    with pytest.raises(CheckpointError, match="has no 'latent_avg'.*start_from_latent_avg"):
        checkpoint_filter_fn(no_avg, model)
    with pytest.raises(CheckpointError, match=r"latent_avg has shape \[17, 64\]"):
        checkpoint_filter_fn(dict(good, latent_avg=torch.zeros(17, 64)), model)

    state = dict(good["state_dict"])
    state["encoder.styles.9.linear.weight"] = torch.zeros(64, 32)
    with pytest.raises(CheckpointError, match=r"styles\.9\.linear\.weight is \[64, 32\] in the file, \[64, 64\]"):
        checkpoint_filter_fn(dict(good, state_dict=state), model)

    state = dict(good["state_dict"], **{"encoder.styles.18.linear.weight": torch.zeros(64, 64)})
    with pytest.raises(CheckpointError, match=r"unknown keys styles\.18\.linear\.weight"):
        checkpoint_filter_fn(dict(good, state_dict=state), model)

    state = {k: v for k, v in good["state_dict"].items() if k != "encoder.body.2.res_layer.5.fc1.weight"}
    with pytest.raises(CheckpointError, match=r"missing keys body\.2\.res_layer\.5\.fc1\.weight"):
        checkpoint_filter_fn(dict(good, state_dict=state), model)

    state = dict(good["state_dict"], **{"face_pool.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="neither encoder.* nor decoder.*"):
        checkpoint_filter_fn(dict(good, state_dict=state), model)

    with pytest.raises(CheckpointError, match="only the GradualStyleEncoder"):
        checkpoint_filter_fn(dict(good, opts={"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}), model)
    with pytest.raises(CheckpointError, match="not a pSp checkpoint"):
        checkpoint_filter_fn({"model_state": {}}, model)


def test_start_from_latent_avg_false_means_no_offset():
    ckpt = U.psp_checkpoint(W, UNITS, S, with_latent_avg=False)
    ckpt["opts"]["start_from_latent_avg"] = False
    model = _loaded(ckpt, (9,))
    assert torch.count_nonzero(model.latent_avg) == 0


def test_rejects_bad_construction_and_inputs():
    with pytest.raises(ValueError):
        StyleEncoder(W, UNITS, (9, 3), S)
    with pytest.raises(ValueError):
        StyleEncoder(W, UNITS, (18,), S)
    with pytest.raises(ValueError):
        StyleEncoder(W, UNITS, (9,), 48)
    with pytest.raises(ValueError, match=r"expected faces \[B,3,64,64\]"):
        StyleEncoder(W, UNITS, (9,), S)(torch.zeros(1, 3, 32, 32))
