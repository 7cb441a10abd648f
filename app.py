"""Entry point of the StyleFusion web app, here and on its Hugging Face Space: ``python app.py``.

The app lives in the package (:mod:`stylefusion.app`); this file only imports and launches it, with
the same arguments as ``stylefusion serve`` (``--model``, ``--host``, ``--port``, ``--share``,
``--no-demo``).
"""

try:  # `spaces` first: ZeroGPU patches CUDA when it is imported (a no-op off Spaces)
    import spaces  # type: ignore[import-not-found]  # noqa: F401
except ImportError:
    pass

import sys

from stylefusion.app import main

if __name__ == "__main__":
    sys.exit(main())
