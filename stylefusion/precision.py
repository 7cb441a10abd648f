"""Which number format the feature extractors run in: ``fp32`` or ``bf16``, and ``auto``.

``fp32`` is exact (with the Winograd CPU path of the style encoder, :mod:`stylefusion.models.winograd`,
within 1e-4 relative of direct convolution). ``bf16`` runs both extractors under
``torch.autocast(dtype=torch.bfloat16)``: convolutions and matrix products take bf16 inputs and
accumulate in fp32. It is much faster where the silicon multiplies bf16 natively, and slower than
fp32 + Winograd where it does not (bf16 is then emulated). ``auto`` therefore picks:

- ``bf16`` on CUDA devices (compute capability 8.0 or more when it can be queried: Ampere and
  later have bf16 tensor cores; older GPUs get ``fp32``);
- ``bf16`` on CPUs with native bf16 instructions: AVX512-BF16 (``avx512_bf16``, e.g. AMD Zen 4,
  Intel Cooper Lake) or AMX-BF16 (``amx_bf16``, Intel Sapphire Rapids and later);
- ``fp32`` elsewhere (AVX2-only CPUs, other devices).

The CPU check reads the ``flags`` line of ``/proc/cpuinfo`` (what the kernel says the CPU and
the hypervisor expose) on Linux; elsewhere it asks PyTorch's own probes, with
``torch.backends.cpu.get_cpu_capability()`` as a hint (no ``AVX512`` capability, no AVX512-BF16).
Tests replace :func:`cpu_has_native_bf16` (``monkeypatch.setattr(precision, "cpu_has_native_bf16",
...)``): :func:`resolve_precision` looks it up at call time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]
#: What callers may ask for.
PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags (as /proc/cpuinfo spells them) meaning native bf16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: The flags benchmarks print next to their figures.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty when the file is not there or lists none)."""
    return _cpu_flags(str(cpuinfo))


@functools.lru_cache(maxsize=8)
def _cpu_flags(cpuinfo: str) -> frozenset[str]:
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):  # x86; arm64 says "Features"
            return frozenset(value.split())
    return frozenset()


def _torch_probe(name: str) -> bool | None:
    probe = getattr(getattr(torch, "cpu", None), name, None)
    if probe is None:
        return None
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - a private probe; treat failure as "unknown"
        return None


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX-BF16), checked at run time.

    Args:
        flags: CPU flags to judge (default: :func:`cpu_flags`, i.e. ``/proc/cpuinfo``).
    """
    flags = cpu_flags() if flags is None else flags
    if flags:
        return bool(flags & NATIVE_BF16_FLAGS)
    # No /proc/cpuinfo (macOS, Windows, a sandbox): PyTorch's own CPUID probes, if this build has them.
    capability = ""
    try:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # noqa: BLE001 - old torch
        pass
    if capability and "AVX512" not in capability:
        return False  # no AVX-512 dispatch: neither AVX512-BF16 nor AMX (which comes with AVX-512)
    probes = [_torch_probe("_is_avx512_bf16_supported"), _torch_probe("_is_amx_tile_supported")]
    return any(p is True for p in probes)


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True for a CUDA device with bf16 tensor cores (compute capability >= 8.0); True when it cannot
    be queried (a device named before CUDA is initialised, or a mocked one)."""
    try:
        if not torch.cuda.is_available():
            return True
        major, _ = torch.cuda.get_device_capability(device)
    except Exception:  # noqa: BLE001
        return True
    return major >= 8


def resolve_precision(requested: str, device: str | torch.device | None = None) -> Precision:
    """``auto`` / ``fp32`` / ``bf16`` → the precision the extractors use on ``device`` (CPU by default).

    Raises:
        ValueError: ``requested`` is none of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r} must be one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested  # type: ignore[return-value]
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        return "bf16" if cuda_has_native_bf16(torch.device(device)) else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"  # mps, xpu, meta, ...: the exact path


def describe_cpu() -> str:
    """One line naming the CPU and its relevant flags, for benchmark output."""
    model = ""
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    marks = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in RELEVANT_FLAGS) if flags else "flags unknown"
    capability = ""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        pass
    return (f"CPU {model or 'unknown'}; {marks}; torch capability {capability or '?'}; "
            f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; auto -> {resolve_precision('auto', 'cpu')}")


__all__ = ["PRECISIONS", "Precision", "NATIVE_BF16_FLAGS", "RELEVANT_FLAGS", "cpu_flags", "cpu_has_native_bf16",
           "cuda_has_native_bf16", "resolve_precision", "describe_cpu"]
