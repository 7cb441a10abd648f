"""ZeroGPU support: ``gpu`` is ``spaces.GPU(duration=120)`` on Hugging Face Spaces, a no-op elsewhere.

``spaces`` must be imported before anything touches CUDA (ZeroGPU patches torch when it is
imported), which is why :mod:`stylefusion.app` imports this module first.
"""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

try:  # pragma: no cover - only on Hugging Face Spaces
    import spaces  # type: ignore[import-not-found]

    gpu: Callable[[F], F] = spaces.GPU(duration=120)
except ImportError:  # anywhere else the decorator is a no-op

    def gpu(fn: F) -> F:
        return fn
