"""The networks of StyleFusion: content trunk, style encoder, fusion head.

One file per network (``content.py``: PyTorchVideo slow_r50 trunk, ``style.py``: pSp
GradualStyleEncoder, ``fusion.py``: the classifier head). Importing this package imports none of
them, so a caller that needs one network does not pay for the others.

The helper below is shared by the two ``checkpoint_filter_fn`` functions, so that a converted
upstream checkpoint that does not fit our module is reported the same way for both networks:
every offending key is named, with shapes, in one :class:`~stylefusion.errors.CheckpointError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from stylefusion.errors import MAX_LISTED_KEYS as _MAX_LISTED
from stylefusion.errors import CheckpointError, format_keys

def match_state_dict(state_dict: Mapping[str, object], model: nn.Module, source: str,
                     optional: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Check ``state_dict`` key by key against ``model.state_dict()`` and return a clean copy.

    Why a separate check when ``load_state_dict(strict=True)`` exists: that raises a multi-line
    ``RuntimeError`` mentioning the module class; a user converting a file needs one line naming
    the file, the keys and both shapes.

    Args:
        state_dict: candidate weights, already renamed to the model's names.
        model: the module the weights are for.
        source: what to call the weights in the message (usually the file name and the part).
        optional: model keys that may be absent (they are left out of the result; the caller
            fills them).

    Returns:
        A new dict with the same keys; floating tensors cast to the dtype the model holds
        (a float16 upstream file then loads into a float32 model) and made contiguous, since
        safetensors refuses non-contiguous tensors.

    Raises:
        CheckpointError: a value is not a tensor, a key is unknown or missing, a shape or a dtype
            kind (floating vs integer) differs.
    """
    expected = model.state_dict()
    optional = set(optional)
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: entries are not tensors: {format_keys(not_tensors)}")
    unknown = set(state_dict) - set(expected)
    missing = set(expected) - set(state_dict) - optional
    problems = []
    if unknown:
        problems.append(f"unknown keys {format_keys(unknown)}")
    if missing:
        problems.append(f"missing keys {format_keys(missing)}")
    wrong = []
    for key in sorted(set(state_dict) & set(expected)):
        value, target = state_dict[key], expected[key]
        if tuple(value.shape) != tuple(target.shape):
            wrong.append(f"{key} is {list(value.shape)} in the file, {list(target.shape)} in the model")
        elif value.is_floating_point() != target.is_floating_point():
            wrong.append(f"{key} has dtype {value.dtype} in the file, {target.dtype} in the model")
    if wrong:
        more = f" (+{len(wrong) - _MAX_LISTED} more)" if len(wrong) > _MAX_LISTED else ""
        problems.append("wrong shapes: " + "; ".join(wrong[:_MAX_LISTED]) + more)
    if problems:
        raise CheckpointError(f"{source}: does not match {type(model).__name__}: " + "; ".join(problems))
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        assert isinstance(value, torch.Tensor)
        target = expected[key]
        if value.is_floating_point() and value.dtype != target.dtype:
            value = value.to(target.dtype)
        out[key] = value.contiguous()
    return out


def zero_batch_counters(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Set every BatchNorm ``num_batches_tracked`` of ``model`` to 0 in ``state_dict``.

    The counter only matters for training with ``momentum=None``; upstream files may or may not
    carry it. Our checkpoints always hold it (so they load strictly into a plain ``nn.BatchNorm``)
    and always as 0, so a converted file does not depend on how long upstream trained.
    """
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.zeros_like(value)
    return state_dict
