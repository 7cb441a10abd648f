"""StyleFusion: a video deepfake detector from content (3D ResNet-50) and style (pSp + StyleGRU) features.

    >>> from stylefusion import StyleFusionDetector  # doctest: +SKIP
    >>> det = StyleFusionDetector.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
    >>> det.detect("video.mp4").label  # doctest: +SKIP

Heavy modules (torch, the networks) are imported on first use, so ``stylefusion --help`` is quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "StyleFusionDetector", "StyleFusionConfig", "DetectionResult", "FrameResult", "VideoFeatures",
    "StyleFusionError", "VideoReadError", "CheckpointError", "ConfigError", "init_checkpoint",
    "preset_config", "__version__",
]

_LAZY = {
    "StyleFusionDetector": "stylefusion.detector", "init_checkpoint": "stylefusion.detector",
    "StyleFusionConfig": "stylefusion.config", "preset_config": "stylefusion.config",
    "DetectionResult": "stylefusion.results", "FrameResult": "stylefusion.results",
    "VideoFeatures": "stylefusion.results",
    "StyleFusionError": "stylefusion.errors", "VideoReadError": "stylefusion.errors",
    "CheckpointError": "stylefusion.errors", "ConfigError": "stylefusion.errors",
}

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.config import StyleFusionConfig, preset_config
    from stylefusion.detector import StyleFusionDetector, init_checkpoint
    from stylefusion.errors import CheckpointError, ConfigError, StyleFusionError, VideoReadError
    from stylefusion.results import DetectionResult, FrameResult, VideoFeatures


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stylefusion' has no attribute {name!r}")
