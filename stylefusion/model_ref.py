"""Which checkpoint to use when a command is not told: one rule for the CLI and the app.

``--model`` beats ``$STYLEFUSION_MODEL`` beats the ``model`` of the Space manifest shipped with the
package (``stylefusion/space/Space.yaml``, a copy of the repository's ``Space.yaml``), so
``stylefusion detect``, ``stylefusion serve``, ``python app.py`` and the Space all default to the
same checkpoint. Nothing here imports torch until the manifest has to be read.
"""

from __future__ import annotations

import os
from pathlib import Path

from stylefusion.errors import StyleFusionError

#: Environment variable naming the checkpoint (a folder or a hub repo id).
ENV_MODEL = "STYLEFUSION_MODEL"


def resolve_model_ref(model: str | os.PathLike | None = None, *, manifest: str | Path | None = None) -> str:
    """The checkpoint reference to load: ``model``, else ``$STYLEFUSION_MODEL``, else the manifest's.

    Args:
        model: what the user named (``--model``); wins when given.
        manifest: a Space manifest file; default: the one shipped with the package.

    Raises:
        StyleFusionError: the manifest is needed but cannot be read or names no model.
    """
    if model:
        return str(model)
    env = os.environ.get(ENV_MODEL, "").strip()
    if env:
        return env
    from stylefusion.hub import read_space_manifest

    ref = str(read_space_manifest(manifest).get("model") or "").strip()
    if not ref:
        where = manifest or "the packaged Space manifest"
        raise StyleFusionError(f"no model given: no --model, no ${ENV_MODEL}, and {where} names no `model`")
    return ref


__all__ = ["ENV_MODEL", "resolve_model_ref"]
