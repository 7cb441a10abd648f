"""``stylefusion convert``: upstream pSp + slow_r50 weights -> one StyleFusion checkpoint.

Inputs are the released files as they are: pSp's ``psp_ffhq_encode.pt`` (encoder, StyleGAN2
decoder, ``opts``, ``latent_avg``) and PyTorchVideo's ``SLOW_8x8_R50.pyth`` (``model_state`` and
PySlowFast bookkeeping). They are read with ``torch.load(weights_only=True)`` only, so a file
that would run code when unpickled is refused instead of executed. The output is the usual
``config.json`` + ``model.safetensors`` folder that ``StyleFusionDetector.from_pretrained``
loads strictly; the config records the sha256 of both inputs.

The fusion head is either copied from a StyleFusion checkpoint (``--head DIR``, with the config
fields that go with it: its architecture, preprocessing, decision rule and training record, and
every tensor that is not a backbone's: the head's and the out-of-domain statistics ``ood.*`` that
``stylefusion train`` writes) or left random with ``trained=False``, which every front end reports
as "untrained".
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pickle
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from stylefusion.config import StyleFusionConfig, preset_config
from stylefusion.errors import CheckpointError, ConfigError
from stylefusion.models import content as content_mod
from stylefusion.models import style as style_mod

logger = logging.getLogger(__name__)

#: State-dict prefixes of the two converted networks. Every other key of a ``--head`` checkpoint
#: (``fusion.*``, and ``ood.*`` where training calibrated it) goes with the head.
BACKBONE_PREFIXES = ("content.", "style.")
#: Config fields that fix the shapes of the two converted networks. A ``--head`` checkpoint must
#: agree on them: its fusion head was trained on features of exactly these networks.
BACKBONE_FIELDS = ("content_width", "content_depths", "style_width", "style_units", "face_size")

_STYLE_LEVEL = re.compile(r"^encoder\.styles\.(\d+)\.")


# ----------------------------------------------------------------------------------------------
# reading upstream files
# ----------------------------------------------------------------------------------------------
def load_upstream(path: str | Path) -> dict[str, Any]:
    """Read an upstream ``.pt``/``.pyth`` checkpoint safely (tensors and plain containers only).

    Why ``weights_only=True`` and nothing else: a pickle can run arbitrary code when loaded, and
    these files come from the internet. Both released files hold only tensors and primitives,
    so they load this way (spec §1.4, §2.1); ``map_location="cpu"`` because pSp saved CUDA tensors.

    Raises:
        CheckpointError: missing or unreadable file, truncated file, not a PyTorch checkpoint,
            a pickle that needs code to load, or a top level that is not a dict. One line that
            names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (protocol byte 0x80).
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                              f"pickle; it starts with {head!r})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            raise CheckpointError(
                f"{path}: refused: it holds pickled objects other than tensors and plain containers "
                "(loading it could run code); StyleFusion only reads checkpoints that load with "
                "torch.load(weights_only=True)") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(text)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError,
            AttributeError, ImportError, MemoryError) as exc:
        # Truncated zip archives give RuntimeError/EOFError; other byte soup gives assorted errors.
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
            f"{type(exc).__name__}: {_first_line(str(exc))}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: top level is {type(obj).__name__}, expected a checkpoint dict")
    return dict(obj)


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line if len(line) <= limit else line[:limit] + "..."


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (the pSp file is ~1.2 GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# conversion
# ----------------------------------------------------------------------------------------------
def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _account(raw_keys: Sequence[str], converted: Mapping[str, Any], name_of, group_of) -> tuple[int, Counter]:
    """How many upstream keys went into ``converted``, and the rest grouped by why they were dropped."""
    used, dropped = 0, Counter()
    for key in raw_keys:
        ours = name_of(key)
        if key.endswith("num_batches_tracked"):
            dropped["BatchNorm counters (written as 0)"] += 1
        elif ours is not None and ours in converted:
            used += 1
        else:
            dropped[group_of(key)] += 1
    return used, dropped


def _slow_r50_accounting(raw: Mapping[str, Any], converted: Mapping[str, Any]) -> tuple[int, Counter]:
    state = raw.get("model_state", raw)
    return _account([str(k) for k in state], converted,
                    name_of=lambda k: _strip(k, "module."),
                    group_of=lambda k: "Kinetics head (blocks.5)" if _strip(k, "module.").startswith(
                        content_mod.HEAD_PREFIX) else "other")


def _psp_accounting(raw: Mapping[str, Any], converted: Mapping[str, Any]) -> tuple[int, Counter]:
    state = raw.get("state_dict", raw)

    def name_of(key: str) -> str | None:
        key = _strip(key, "module.")
        return key[len("encoder."):] if key.startswith("encoder.") else None

    def group_of(key: str) -> str:
        key = _strip(key, "module.")
        if key.startswith("decoder."):
            return "StyleGAN2 decoder"
        if _STYLE_LEVEL.match(key):
            return "style blocks of unused levels"
        if key.startswith(("encoder.latlayer1.", "encoder.latlayer2.")):
            return "lateral convs unused by the levels"
        return "other"

    used, dropped = _account([str(k) for k in state if k != "latent_avg"], converted, name_of, group_of)
    return used + (raw.get("latent_avg") is not None), dropped  # + the top-level latent_avg


def _materialise(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Real tensors for the entries a filter made from the meta skeleton: the BatchNorm counters,
    which are written as 0 (see :func:`stylefusion.models.zero_batch_counters`)."""
    return {k: torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v for k, v in state_dict.items()}


def _head_config(head: str | Path, cfg: StyleFusionConfig, levels_given: bool):
    """Load a StyleFusion checkpoint for its fusion head and the config that goes with it."""
    from stylefusion.detector import StyleFusionDetector

    head = Path(head)
    if not head.is_dir():
        raise CheckpointError(f"{head}: --head must be a StyleFusion checkpoint folder")
    donor = StyleFusionDetector.from_pretrained(head)
    hc = donor.config
    wrong = [f"{name}={getattr(hc, name)!r} (conversion: {getattr(cfg, name)!r})"
             for name in BACKBONE_FIELDS if getattr(hc, name) != getattr(cfg, name)]
    if levels_given and hc.style_levels != cfg.style_levels:
        wrong.append(f"style_levels={hc.style_levels!r} (--levels: {cfg.style_levels!r})")
    if wrong:
        raise CheckpointError(f"{head}: its fusion head was trained with other backbones than this "
                              f"conversion makes: {', '.join(wrong)}")
    # Everything but the backbone shapes comes from the head's checkpoint: the fusion architecture
    # (the weights must fit), the preprocessing it was trained on, its decision rule and record.
    keep = {name: getattr(cfg, name) for name in ("preset", *BACKBONE_FIELDS)}
    return donor, hc.replace(**keep, provenance={})


def convert(psp: str | Path, slow_r50: str | Path, out: str | Path, levels: Sequence[int] | None = None,
            head: str | Path | None = None, preset: str = "full") -> dict[str, Any]:
    """Convert upstream pSp and slow_r50 checkpoints into a StyleFusion checkpoint folder.

    Args:
        psp: pSp ``.pt`` file (e.g. ``psp_ffhq_encode.pt``).
        slow_r50: PyTorchVideo ``.pyth`` file (e.g. ``SLOW_8x8_R50.pyth``).
        out: output folder (``config.json`` + ``model.safetensors``).
        levels: pSp style levels to keep (default: the head's, else the report's ``(9,)``).
        head: a StyleFusion checkpoint folder to take the fusion head and its config from.
        preset: network sizes (``full`` for the real files; ``tiny`` for tests).

    Returns:
        A JSON-serialisable summary: output, sha256 of the inputs, upstream keys converted per
        network, keys dropped by group, parameter counts per module, whether the head is trained.

    Raises:
        CheckpointError: an input is unreadable, unsafe, or does not match the networks.
        ConfigError: bad ``levels`` or ``preset``.
    """
    from stylefusion import __version__
    from stylefusion.detector import StyleFusionDetector

    psp, slow_r50, out = Path(psp), Path(slow_r50), Path(out)
    overrides = {} if levels is None else {"style_levels": tuple(int(i) for i in levels)}
    cfg = preset_config(preset, **overrides)
    donor = None
    if head is not None:
        donor, cfg = _head_config(head, cfg, levels_given=levels is not None)
    else:
        cfg = cfg.replace(trained=False, training={})

    logger.info("reading %s", slow_r50)
    slow_raw = load_upstream(slow_r50)
    logger.info("reading %s", psp)
    psp_raw = load_upstream(psp)
    provenance: dict[str, Any] = {
        "psp": {"file": psp.name, "sha256": sha256_file(psp)},
        "slow_r50": {"file": slow_r50.name, "sha256": sha256_file(slow_r50)},
        "converted_by": f"stylefusion {__version__}",
    }

    # Keys and shapes are checked against a skeleton on the meta device (no memory, no random
    # init): files that do not fit are refused before the full networks are allocated.
    with torch.device("meta"):
        skeleton = StyleFusionDetector(cfg)
    content_sd = _materialise(content_mod.checkpoint_filter_fn(slow_raw, skeleton.content,
                                                               source=f"{slow_r50}"))
    style_sd = _materialise(style_mod.checkpoint_filter_fn(psp_raw, skeleton.style, source=f"{psp}"))
    del skeleton
    model = StyleFusionDetector(cfg)
    # The head's side, whole: the donor's config (kept above) decides which modules the detector
    # builds, so its state dict has exactly their keys; copying only ``fusion.*`` would leave a
    # calibrated checkpoint's ``ood.*`` out and fail the strict load.
    source = donor if donor is not None else model
    head_sd = {k: v for k, v in source.state_dict().items() if not k.startswith(BACKBONE_PREFIXES)}
    full = {f"content.{k}": v for k, v in content_sd.items()}
    full.update({f"style.{k}": v for k, v in style_sd.items()})
    full.update(head_sd)
    try:
        model.load_state_dict(full, strict=True)
    except RuntimeError as exc:  # the filters checked every key; this guards the detector's own parts
        raise CheckpointError(f"converted weights do not load into the detector: "
                              f"{_first_line(str(exc))}") from None
    if donor is not None:
        provenance["fusion_head"] = {"from": str(head), "trained": bool(cfg.trained)}
    model.config.provenance = provenance
    model.save_pretrained(out)

    content_used, content_dropped = _slow_r50_accounting(slow_raw, content_sd)
    style_used, style_dropped = _psp_accounting(psp_raw, style_sd)
    dropped = {f"slow_r50: {g}": n for g, n in sorted(content_dropped.items())}
    dropped.update({f"psp: {g}": n for g, n in sorted(style_dropped.items())})
    # Keys copied from --head, by module (fusion, ood); none for a random head.
    copied = Counter(k.split(".", 1)[0] for k in head_sd) if donor is not None else Counter(fusion=0)
    params = {name: _count(getattr(model, name)) for name in ("content", "style", "fusion")}
    params["total"] = sum(params.values())
    return {
        "out": str(out),
        "preset": cfg.preset,
        "style_levels": list(cfg.style_levels),
        "trained": bool(cfg.trained),
        "inputs": {k: provenance[k] for k in ("psp", "slow_r50")},
        "keys_converted": {"content": content_used, "style": style_used, **dict(sorted(copied.items()))},
        "keys_dropped": dropped,
        "parameters": params,
    }


# ----------------------------------------------------------------------------------------------
# CLI glue (the parser lives in stylefusion.cli)
# ----------------------------------------------------------------------------------------------
def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``stylefusion convert``."""
    parser.add_argument("--psp", required=True, metavar="FILE",
                        help="pSp checkpoint (psp_ffhq_encode.pt)")
    parser.add_argument("--slow-r50", required=True, metavar="FILE", dest="slow_r50",
                        help="PyTorchVideo slow_r50 checkpoint (SLOW_8x8_R50.pyth)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output checkpoint folder")
    parser.add_argument("--levels", type=int, nargs="+", default=None, metavar="L",
                        help="pSp style levels to keep, 0-17 (default: the --head checkpoint's, else 9)")
    parser.add_argument("--head", default=None, metavar="DIR",
                        help="StyleFusion checkpoint to take the trained fusion head from "
                             "(default: a random head, marked untrained)")
    parser.add_argument("--preset", default="full", choices=("full", "tiny"),
                        help="network sizes (full = the released upstream networks)")


def run_convert(args: argparse.Namespace) -> int:
    """Run the conversion and print its summary; errors propagate as StyleFusionError."""
    levels = None if args.levels is None else sorted(args.levels)
    if levels is not None and len(set(levels)) != len(levels):
        raise ConfigError(f"--levels {args.levels} repeats a level")
    summary = convert(args.psp, args.slow_r50, args.out, levels=levels, head=args.head,
                      preset=args.preset)
    print(format_summary(summary))
    return 0


def format_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable summary for the CLI (the dict itself is JSON-serialisable)."""
    p = summary["parameters"]
    lines = [
        f"wrote {summary['out']} (preset {summary['preset']}, style levels {summary['style_levels']})",
        f"  slow_r50: {summary['inputs']['slow_r50']['file']} sha256 {summary['inputs']['slow_r50']['sha256']}",
        f"  psp:      {summary['inputs']['psp']['file']} sha256 {summary['inputs']['psp']['sha256']}",
        "  keys converted: " + ", ".join(f"{k} {v}" for k, v in summary["keys_converted"].items()),
        "  keys dropped:   " + (", ".join(f"{k} {v}" for k, v in summary["keys_dropped"].items()) or "none"),
        f"  parameters: content {p['content']:,}, style {p['style']:,}, fusion {p['fusion']:,}, "
        f"total {p['total']:,}",
        "  fusion head: " + ("trained (copied from --head)" if summary["trained"]
                             else "UNTRAINED (random): outputs are not verdicts until it is trained"),
    ]
    return "\n".join(lines)


__all__ = ["convert", "load_upstream", "sha256_file", "add_convert_arguments", "run_convert",
           "format_summary"]
