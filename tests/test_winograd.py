"""Winograd F(4x4,3x3) convolution: the algebra, the layer, when it is used, and the encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import pytest

import upstream_layouts as U
from stylefusion.models import winograd as wg
from stylefusion.models.style import StyleEncoder, checkpoint_filter_fn
from stylefusion.models.winograd import WinogradConv2d, transform_weight, winograd_conv3x3


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).abs().max() / ref.abs().max())


def test_transform_matrices_compute_a_correlation_exactly():
    """A^T [(G g) ⊙ (B^T d)] is the 4-output, 3-tap correlation of d with g (float64)."""
    bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in (wg._BT, wg._G, wg._AT))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        d, k = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)
        want = torch.stack([(d[i:i + 3] * k).sum() for i in range(4)])
        torch.testing.assert_close(at @ ((g @ k) * (bt @ d)), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, c_in, c_out, h, w", [(1, 128, 64, 32, 32), (3, 16, 24, 5, 7), (2, 8, 8, 1, 1),
                                                  (1, 32, 32, 17, 16), (2, 64, 128, 16, 12)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_equals_conv2d(n, c_in, c_out, h, w, channels_last, bias):
    gen = torch.Generator().manual_seed(n * 1000 + c_in + h)
    x = torch.randn(n, c_in, h, w, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (3 * c_in ** 0.5)
    b = torch.randn(c_out, generator=gen) if bias else None
    ref = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), padding=1)
    out = winograd_conv3x3(x, transform_weight(weight), b)
    direct = F.conv2d(x, weight, b, padding=1)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    # float32 Winograd is within a few times the rounding error of float32 direct convolution
    assert _rel_err(out, ref) < 5e-5, (_rel_err(out, ref), _rel_err(direct, ref))


def test_transform_weight_rejects_non_3x3():
    with pytest.raises(ValueError, match="3x3"):
        transform_weight(torch.zeros(4, 4, 5, 5))
    with pytest.raises(ValueError, match="input channels"):
        winograd_conv3x3(torch.zeros(1, 8, 4, 4), transform_weight(torch.zeros(4, 16, 3, 3)))


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = wg.winograd_conv3x3

    def counting(x, u, bias=None):
        calls.append(x.shape[1])
        return real(x, u, bias)

    monkeypatch.setattr(wg, "winograd_conv3x3", counting)
    return calls


def test_layer_takes_the_fast_path_only_where_it_should(monkeypatch):
    calls = _spy(monkeypatch)
    torch.manual_seed(0)
    conv = WinogradConv2d(128, 32, 3, 1, 1, bias=False)
    x = torch.randn(2, 128, 8, 8)
    direct = F.conv2d(x, conv.weight, None, 1, 1)
    with torch.inference_mode():
        fast = conv(x)
    assert calls == [128]
    torch.testing.assert_close(fast, direct, rtol=1e-4, atol=1e-5)

    out = conv(x)  # autograd on: exactly nn.Conv2d, and differentiable
    assert calls == [128] and out.requires_grad
    assert torch.equal(out.detach(), direct.detach())

    with torch.no_grad():
        conv.min_channels = 256  # below the threshold
        assert torch.equal(conv(x), direct)
        conv.min_channels = 128
        conv.winograd = False
        assert torch.equal(conv(x), direct)
        conv.winograd = True
        strided = WinogradConv2d(128, 32, 3, 2, 1, bias=False)
        assert torch.equal(strided(x), F.conv2d(x, strided.weight, None, 2, 1))
        assert torch.equal(conv.double()(x.double()), F.conv2d(x.double(), conv.weight, None, 1, 1))
    assert calls == [128]


def test_cached_filters_follow_the_weights():
    torch.manual_seed(1)
    conv = WinogradConv2d(128, 16, 3, 1, 1, bias=True)
    x = torch.randn(1, 128, 8, 8)
    with torch.no_grad():
        conv(x)
        first = conv.transformed_weight()
        assert conv.transformed_weight() is first  # cached
        conv.weight.mul_(-2.0)  # in-place update
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, 1, 1), rtol=1e-4, atol=1e-5)
        other = WinogradConv2d(128, 16, 3, 1, 1, bias=True)
        conv.load_state_dict(other.state_dict())
        torch.testing.assert_close(conv(x), other(x), rtol=1e-4, atol=1e-5)
        assert conv.transformed_weight() is not first


def test_encoder_with_winograd_matches_the_direct_reference():
    """A small pSp encoder whose stages all take the fast path, against the independent reference.

    ``psp_checkpoint`` draws trained-like scales (BN statistics, 1/sqrt(fan_in) filters), so the
    comparison reflects real networks; the tolerance is the benchmark's (rtol 1e-4).
    """
    width, units, size = 16, (1, 2, 2, 1), 64
    ckpt = U.psp_checkpoint(width, units, size, seed=3)
    enc = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    model = StyleEncoder(width, units, (2, 5, 9), size).eval()
    model.load_state_dict(checkpoint_filter_fn(ckpt, model), strict=True)
    model.set_winograd(True, min_channels=16)
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(4))
    ref64 = U.psp_reference({k: v.double() for k, v in enc.items()}, ckpt["latent_avg"].double(), x.double(),
                            (2, 5, 9), units)
    ref32 = U.psp_reference(enc, ckpt["latent_avg"], x, (2, 5, 9), units)
    counted = 0
    for m in model.modules():
        if isinstance(m, WinogradConv2d) and m.stride == (1, 1):
            counted += 1
    with torch.inference_mode():
        fast = model(x)
        staged = model(x, stem_batch=1)
        fast_cl = model(x.contiguous(memory_format=torch.channels_last))
        empty = model(x[:0], stem_batch=1)
        model.set_winograd(False)
        slow = model(x)
    assert counted >= 8
    assert empty.shape == (0, 3, width * 8)
    assert _rel_err(fast, ref64) < 1e-4 and _rel_err(slow, ref64) < 1e-5
    assert _rel_err(fast, ref64) < 20 * max(_rel_err(ref32, ref64), 1e-7)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4 * float(slow.abs().max()))
    scale = float(fast.abs().max())  # batch composition changes oneDNN's summation order only
    torch.testing.assert_close(staged, fast, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(fast_cl, fast, rtol=1e-5, atol=1e-5 * scale)
