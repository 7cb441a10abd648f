"""``precision``: what ``auto`` picks (with the CPU's capability mocked both ways), and what each path does.

The fp32 numbers themselves are pinned by ``tests/test_golden.py`` (its detector is loaded with
``precision="fp32"`` in ``conftest.py``), so ``fp32`` output is the output from before bf16 existed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stylefusion import precision
from stylefusion.detector import StyleFusionDetector
from stylefusion.models.winograd import WinogradConv2d
from stylefusion.precision import cpu_flags, cpu_has_native_bf16, resolve_precision


@pytest.fixture
def native_bf16(monkeypatch):
    """Set what the CPU is said to support: ``native_bf16(True)`` / ``native_bf16(False)``."""
    def set_(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: value)
    return set_


# -- selection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_follows_the_capability(native_bf16, native, want):
    native_bf16(native)
    assert resolve_precision("auto", "cpu") == want
    assert resolve_precision("auto", None) == want  # no device: the CPU
    # explicit requests are honoured whatever the CPU
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cuda_is_bf16(native_bf16, monkeypatch, native):
    native_bf16(native)  # the CPU's capability does not matter on a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a device named, not queried
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", torch.device("cuda", 1)) == "bf16"
    # a GPU that can be queried: bf16 from compute capability 8.0 (Ampere), fp32 before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    assert resolve_precision("auto", "cuda:0") == "bf16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_precision("auto", "cuda:0") == "fp32"
    assert resolve_precision("bf16", "cuda:0") == "bf16"


def test_auto_elsewhere_is_fp32(native_bf16):
    native_bf16(True)
    assert resolve_precision("auto", "meta") == "fp32"


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", None, "float32"])
def test_unknown_precision_is_refused(bad):
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(bad, "cpu")


@pytest.mark.parametrize("flags, want", [
    ({"fpu", "sse2", "avx2", "fma"}, False),                      # AVX2 machine
    ({"avx2", "avx512f", "avx512_vnni"}, False),                  # AVX-512 without bf16 (Skylake-X)
    ({"avx2", "avx512f", "avx512_bf16"}, True),                   # Zen 4, Cooper Lake
    ({"avx2", "avx512f", "amx_tile", "amx_bf16"}, True),          # Sapphire Rapids
])
def test_native_bf16_from_flags(flags, want):
    assert cpu_has_native_bf16(frozenset(flags)) is want


def test_cpuinfo_flags_are_read(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_without_cpuinfo_torch_probes_decide(monkeypatch):
    """No /proc/cpuinfo: PyTorch's capability (a hint) and its CPUID probes."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert cpu_has_native_bf16(frozenset()) is False
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16(frozenset()) is True
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16(frozenset()) is False


# -- the detector --------------------------------------------------------------------------------
def _built(det) -> int:
    return sum(m._u is not None for m in det.style.modules() if isinstance(m, WinogradConv2d))


def _winograd_on(det) -> bool:
    return all(m.winograd for m in det.style.modules() if isinstance(m, WinogradConv2d))


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_detector_auto_picks_the_cpu_path(tiny_ckpt, native_bf16, native, want):
    native_bf16(native)
    det = StyleFusionDetector.from_pretrained(tiny_ckpt)  # precision="auto" is the default
    assert det.requested_precision == "auto" and det.precision == want
    assert det.identity()["precision"] == want
    assert _winograd_on(det) is (want == "fp32")  # Winograd only on the fp32 path
    assert det.autocast is (want == "bf16")  # the deprecated flag reads the same
    assert det._autocast().fast_dtype == torch.bfloat16 and det._autocast()._enabled is (want == "bf16")


def test_detector_explicit_and_alias(tiny_ckpt, native_bf16):
    native_bf16(True)
    assert StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp32").precision == "fp32"
    native_bf16(False)
    assert StyleFusionDetector.from_pretrained(tiny_ckpt, precision="bf16").precision == "bf16"
    det = StyleFusionDetector.from_pretrained(tiny_ckpt, autocast=True)  # the old flag = bf16
    assert det.precision == "bf16" and not _winograd_on(det)
    det.autocast = False  # as benchmarks/bench_gpu.py switches
    assert det.precision == "fp32" and _winograd_on(det) and det.identity()["precision"] == "fp32"
    det.set_precision("bf16")
    assert det.precision == "bf16" and det.identity()["precision"] == "bf16"
    assert StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp32", winograd=False).precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp16")


def test_detector_auto_on_a_cuda_device_is_bf16(tiny_ckpt, native_bf16, monkeypatch):
    """Resolved for the model's device (a mocked CUDA one here), again after every move."""
    native_bf16(False)
    det = StyleFusionDetector.from_pretrained(tiny_ckpt)
    assert det.precision == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(StyleFusionDetector, "device", property(lambda self: torch.device("cuda", 0)))
    det.to(torch.float32)  # a no-op move: re-resolves for the (mocked) device
    assert det.precision == "bf16" and not _winograd_on(det)


def _crops(det, n: int, seed: int = 0) -> np.ndarray:
    s = det.config.face_size
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def _style_passes(det, n: int) -> list[tuple[int, int | None]]:
    """(faces, stem_batch) of each style-encoder pass of ``det.style_features`` on n crops."""
    calls = []
    real = det.style.forward

    def spy(x, stem_batch=None):
        calls.append((len(x), stem_batch))
        return real(x, stem_batch)

    det.style.forward = spy
    try:
        out = det.style_features(_crops(det, n))
    finally:
        del det.style.forward
    assert out.shape[0] == n
    return calls


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_cpu_style_batching_follows_the_precision_auto_picks(tiny_ckpt, native_bf16, native, want):
    """The CPU batching of the style encoder is the one of the precision ``auto`` resolved to."""
    from stylefusion.detector import CPU_STYLE_BATCH

    native_bf16(native)
    det = StyleFusionDetector.from_pretrained(tiny_ckpt)
    assert det.precision == want
    bs, stem = CPU_STYLE_BATCH[want]
    n = 2 * bs + 3
    assert _style_passes(det, n) == [(bs, stem), (bs, stem), (3, stem)]
    det.style_batch_size = 5  # the explicit setting replaces the faces per pass, not the stem batch
    assert _style_passes(det, 12) == [(5, stem), (5, stem), (2, stem)]


def test_fp32_cpu_style_batching_is_pinned(tiny_ckpt):
    """fp32 keeps 4 faces per pass, the first stages one at a time: a stem batch of more than one
    face changes the last bits of the full-size encoder's fp32 latents (oneDNN blocks differently),
    and fp32 is the exact path."""
    from stylefusion.detector import CPU_STYLE_BATCH

    assert CPU_STYLE_BATCH["fp32"] == (4, 1)
    bs, stem = CPU_STYLE_BATCH["bf16"]
    assert bs >= 1 and 1 <= stem <= bs
    det = StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp32")
    assert _style_passes(det, 6) == [(4, 1), (2, 1)]


def test_bf16_on_cpu_is_close_to_fp32_and_builds_no_winograd_filters(tiny_ckpt, monkeypatch):
    fp32 = StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp32")
    bf16 = StyleFusionDetector.from_pretrained(tiny_ckpt, precision="bf16")
    # The tiny encoder has no conv of >= 128 channels: let Winograd take every 3x3 conv, so that the
    # fp32 path demonstrably builds filters and the bf16 path demonstrably does not.
    for det in (fp32, bf16):
        for m in det.style.modules():
            if isinstance(m, WinogradConv2d):
                m.min_channels = 1
    calls = {"n": 0}
    original = WinogradConv2d.transformed_weight

    def counting(self):
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(WinogradConv2d, "transformed_weight", counting)
    crops = _crops(fp32, 8)
    ref_style, ref_content = fp32.style_features(crops), fp32.content_features(np.concatenate([crops] * 4))
    assert calls["n"] > 0 and _built(fp32) > 0  # the check below can see a build
    calls["n"] = 0
    style, content = bf16.style_features(crops), bf16.content_features(np.concatenate([crops] * 4))
    assert calls["n"] == 0 and _built(bf16) == 0
    assert style.dtype == torch.float32 and style.shape == ref_style.shape
    assert content.dtype == torch.float32 and content.shape == ref_content.shape
    cos = torch.nn.functional.cosine_similarity(style.flatten(1), ref_style.flatten(1))
    assert cos.min() > 0.99, cos
    cos_c = torch.nn.functional.cosine_similarity(content, ref_content)
    assert cos_c.min() > 0.99, cos_c
    assert not torch.equal(style, ref_style)  # it really ran in bf16


def test_fp32_is_the_plain_fp32_computation(tiny_ckpt, native_bf16):
    """precision="fp32" adds nothing to the numbers: no autocast, whatever the CPU supports."""
    from stylefusion.transforms import style_inputs

    native_bf16(True)
    det = StyleFusionDetector.from_pretrained(tiny_ckpt, precision="fp32")
    crops = _crops(det, 4, seed=1)
    with torch.inference_mode():
        want = det.style(style_inputs(torch.from_numpy(crops), det.config, det.device), 1)
    assert torch.equal(det.style_features(crops), want)


# -- where it is recorded ------------------------------------------------------------------------
def test_cli_records_the_precision_in_the_report(tiny_ckpt, tmp_path):
    from stylefusion.cli import main as cli_main

    out = tmp_path / "r.json"  # a missing video: the detector is loaded, no network runs
    assert cli_main(["detect", str(tmp_path / "missing.mp4"), "--model", str(tiny_ckpt), "--json", str(out),
                     "--quiet", "--precision", "bf16"]) == 1
    assert json.loads(out.read_text())["model"]["precision"] == "bf16"


def test_result_records_the_precision_and_validates(carphone_result):
    import jsonschema

    from stylefusion.results import result_schema

    doc = carphone_result.to_dict()  # the session's detector, loaded with precision="fp32"
    assert doc["checkpoint"]["precision"] == "fp32"
    schema = result_schema("result")
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(doc)
    doc["checkpoint"]["precision"] = "fp16"
    assert not validator.is_valid(doc)


def test_cli_and_serve_take_precision():
    from stylefusion.cli import build_parser

    for argv in (["detect", "x.mp4", "--precision", "fp32"], ["serve", "--precision", "bf16"]):
        assert build_parser(argv).parse_args(argv).precision == argv[-1]
    argv = ["detect", "x.mp4"]
    assert build_parser(argv).parse_args(argv).precision == "auto"
    with pytest.raises(SystemExit):
        argv = ["detect", "x.mp4", "--precision", "fp16"]
        build_parser(argv).parse_args(argv)


def test_app_loads_with_the_precision(tiny_ckpt):
    from stylefusion.app.model import load_model

    loaded = load_model(str(tiny_ckpt), precision="bf16")
    assert loaded.detector is not None and loaded.detector.precision == "bf16"


def test_cache_header_records_the_precision():
    from stylefusion.research.cache import EntryHeader
    from stylefusion.research.manifest import ManifestRecord

    fields = ManifestRecord.__dataclass_fields__
    record = ManifestRecord(**{k: ("train" if k == "split" else "x") for k in fields if k != "label"}, label=0)
    header = EntryHeader(record, True, "", {}, "a" * 64, "b" * 64, precision="bf16")
    meta = header.to_metadata()
    assert meta["precision"] == "bf16"
    assert EntryHeader.from_metadata(meta).precision == "bf16"
    old = {k: v for k, v in meta.items() if k != "precision"}  # entries written before the field
    assert EntryHeader.from_metadata(old).precision == ""
