"""StyleFusionDetector: both feature extractors and the fusion head behind one ``from_pretrained``.

A checkpoint is a folder (or a Hugging Face hub repo) with ``config.json`` — a
:class:`~stylefusion.config.StyleFusionConfig` with the architecture AND the preprocessing — and one
``model.safetensors`` whose keys start with ``content.`` (slow_r50 trunk), ``style.`` (pSp encoder
subset) or ``fusion.`` (the head). Loading is strict: a missing or unexpected key is an error that
lists them (huggingface_hub's mixin loads non-strictly by default, which would let an incomplete
checkpoint run with random weights).

``detect`` runs the report's pipeline — frames → faces → features → head — with every crop of a
video going through each network in one or a few batched passes, and answers honestly: a checkpoint
whose head was never trained yields the label ``untrained`` and no probability.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from stylefusion import __version__
from stylefusion.config import StyleFusionConfig, preset_config
from stylefusion.errors import CheckpointError, ConfigError, StyleFusionError
from stylefusion.faces import FaceCropper, FaceTrack
from stylefusion.models.content import SlowR50Trunk
from stylefusion.models.fusion import FusionHead, FusionOutput
from stylefusion.models.style import StyleEncoder
from stylefusion.results import DetectionResult, FrameResult, VideoFeatures
from stylefusion.video import Frames, read_frames

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Files that would be unpickled to load; we refuse them rather than execute code from a download.
UNSAFE_WEIGHTS = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt")
#: A safetensors file larger than this is not a StyleFusion checkpoint (the full model is ~0.3 GB).
MAX_WEIGHTS_BYTES = 4 * 1024**3
#: Faces per style-encoder pass on the CPU (measured best of 1-32 on 2 cores, full encoder).
CPU_STYLE_BATCH = 4

ProgressFn = Callable[[str, float], None]


def _config_digest(config_json: str) -> str:
    return hashlib.sha256(config_json.encode("utf-8")).hexdigest()


class StyleFusionDetector(nn.Module, PyTorchModelHubMixin, library_name="stylefusion",
                          tags=["deepfake-detection", "video-classification"],
                          repo_url="https://github.com/stylefusion/stylefusion"):
    """The detector: ``content`` (slow_r50 trunk), ``style`` (pSp encoder subset), ``fusion`` (head).

    Example:
        >>> det = StyleFusionDetector.from_pretrained("path/or/org-name")  # doctest: +SKIP
        >>> result = det.detect("video.mp4")  # doctest: +SKIP
        >>> result.label, result.p_fake  # doctest: +SKIP
    """

    def __init__(self, config: StyleFusionConfig):
        super().__init__()
        if isinstance(config, dict):  # the hub mixin may hand us the parsed JSON
            config = StyleFusionConfig.from_dict(config)
        self.config = config
        self.content = SlowR50Trunk.from_config(config)
        self.style = StyleEncoder.from_config(config)
        self.fusion = FusionHead(config)
        self.source: dict[str, Any] = {"name": None, "revision": None}
        self.use_autocast = False  # bf16 autocast of the extractors on CUDA
        self._cropper: FaceCropper | None = None
        self._identity: dict[str, Any] | None = None
        self._style_channels_last = False
        # Normalisation constants as [1, 3, 1, 1] tensors (not buffers: they live in the config).
        self._style_mean = torch.tensor(config.style_mean).view(1, 3, 1, 1)
        self._style_std = torch.tensor(config.style_std).view(1, 3, 1, 1)
        self._content_mean = torch.tensor(config.content_mean).view(1, 3, 1, 1)
        self._content_std = torch.tensor(config.content_std).view(1, 3, 1, 1)

    # ------------------------------------------------------------------------------------------
    # loading and saving
    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | os.PathLike, revision: str | None = None,
                        device: str | torch.device | None = None, **hub_kwargs: Any) -> "StyleFusionDetector":
        """Load a checkpoint from a local folder or a Hugging Face hub repo id, strictly.

        Args:
            repo_id_or_dir: a folder with ``config.json`` + ``model.safetensors``, or a hub repo id
                (``org/name``). With ``HF_HUB_OFFLINE=1`` a repo id is read from the hub cache only.
            revision: hub branch, tag or commit (ignored for folders).
            device: where to put the model; CPU by default.

        Raises:
            CheckpointError: the folder does not exist or is not a StyleFusion checkpoint, the repo
                cannot be fetched, the weights are not safetensors, or keys/shapes do not match.
        """
        folder = resolve_checkpoint(repo_id_or_dir, revision=revision, **hub_kwargs)
        config = StyleFusionConfig.from_json_file(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else None
        if config is None:
            raise CheckpointError(f"{repo_id_or_dir}: no {CONFIG_NAME}: not a StyleFusion checkpoint")
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            unsafe = [n for n in UNSAFE_WEIGHTS if (folder / n).exists()]
            if unsafe:
                raise CheckpointError(
                    f"{repo_id_or_dir}: weights are in {unsafe[0]} (a pickle, which can run code when "
                    f"loaded); StyleFusion only loads {WEIGHTS_NAME}")
            raise CheckpointError(f"{repo_id_or_dir}: {WEIGHTS_NAME} is missing")
        # Check the weights against a skeleton on the meta device first: a config that does not match
        # its weights (or asks for a huge model) fails before any real memory is allocated.
        with torch.device("meta"):
            skeleton = cls(config)
        state = read_weights(weights, skeleton.state_dict(), config)
        del skeleton
        model = cls(config)
        model.load_state_dict(state, strict=True)
        model.source = {"name": str(repo_id_or_dir), "revision": revision, "folder": str(folder)}
        if device is not None:
            model.to(device)
        return model.eval()

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write config.json and model.safetensors; each file appears whole or not at all."""
        from safetensors.torch import save_file

        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        config_json = json.dumps(self.config.to_dict(), sort_keys=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        metadata = {"format": "pt", "stylefusion_version": __version__,
                    "stylefusion_config_sha256": _config_digest(config_json)}
        tmp_w = save_directory / f".{WEIGHTS_NAME}.tmp-{os.getpid()}"
        tmp_c = save_directory / f".{CONFIG_NAME}.tmp-{os.getpid()}"
        try:
            save_file(state, str(tmp_w), metadata=metadata)
            os.chmod(tmp_w, 0o644)  # safetensors creates 0600; a checkpoint folder is meant to be shared
            _fsync(tmp_w)
            tmp_c.write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
            _fsync(tmp_c)
            os.replace(tmp_w, save_directory / WEIGHTS_NAME)
            os.replace(tmp_c, save_directory / CONFIG_NAME)
        finally:
            for tmp in (tmp_w, tmp_c):
                tmp.unlink(missing_ok=True)
        readme = save_directory / "README.md"
        if not readme.exists():
            readme.write_text(_short_card(self.config), encoding="utf-8")
        self._identity = None

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> str | None:
        """Save to a folder that ``from_pretrained`` loads (``push_to_hub=True`` also uploads)."""
        kwargs["config"] = None  # we write config.json ourselves, from self.config
        self._hub_mixin_config = None
        return super().save_pretrained(save_directory, **kwargs)

    def identity(self) -> dict[str, Any]:
        """What checkpoint this is: name, revision, sha256 of the weights, preset, training status."""
        if self._identity is None:
            h = hashlib.sha256()
            for k, v in sorted(self.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._identity = {
                "name": self.source.get("name"), "revision": self.source.get("revision"),
                "weights_sha256": h.hexdigest(), "preset": self.config.preset,
                "trained": bool(self.config.trained),
                "trained_on": self.config.training.get("data_summary") or self.config.training.get("dataset"),
            }
        return dict(self._identity)

    # ------------------------------------------------------------------------------------------
    # pipeline stages
    # ------------------------------------------------------------------------------------------
    @property
    def cropper(self) -> FaceCropper:
        if self._cropper is None or self._cropper.device != self.device:
            self._cropper = FaceCropper(self.config, device=self.device)
        return self._cropper

    def read(self, path: str | Path) -> Frames:
        """Stage 1: T frames sampled uniformly (raises VideoReadError on a bad file)."""
        return read_frames(path, self.config.num_frames)

    def faces(self, frames: Frames) -> FaceTrack:
        """Stage 2: main-face crops of the sampled frames."""
        return self.cropper(frames)

    def _autocast(self):
        enabled = self.use_autocast and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def style_features(self, crops: np.ndarray) -> torch.Tensor:
        """Stage 3a: [T, S, S, 3] uint8 crops → [T, n_levels, style_dim] pSp latents."""
        if not self._style_channels_last:
            # oneDNN and cuDNN run these 2-D convolutions 1.3-1.4x faster in NHWC (measured on the
            # full encoder, 16 crops, 2 CPU cores); outputs agree to 1e-7.
            self.style.to(memory_format=torch.channels_last)
            self._style_channels_last = True
        # On the CPU, small batches are faster: 4 faces per pass, the first stages one face at a time
        # (StyleEncoder.forward_features says why; a batch of 16 spills the caches). GPUs want
        # large batches.
        on_cpu = self.device.type == "cpu"
        bs = min(CPU_STYLE_BATCH, self.config.style_batch_size) if on_cpu else self.config.style_batch_size
        stem_batch = 1 if on_cpu else None
        chunks = []
        x_all = torch.from_numpy(np.ascontiguousarray(crops))
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(x_all), bs):
                x = x_all[start:start + bs].to(self.device, non_blocking=True)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)
                x = (x - self._style_mean.to(x.device)) / self._style_std.to(x.device)
                chunks.append(self.style(x.contiguous(memory_format=torch.channels_last), stem_batch).float())
        return torch.cat(chunks).cpu()

    def content_features(self, crops: np.ndarray) -> torch.Tensor:
        """Stage 3b: [T, S, S, 3] uint8 crops → [num_clips, content_dim], one vector per clip."""
        c = self.config
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)  # [T, 3, S, S]
            x = F.interpolate(x, size=(c.content_size, c.content_size), mode="bilinear",
                              align_corners=False, antialias=True)
            x = (x - self._content_mean.to(x.device)) / self._content_std.to(x.device)
            x = x.view(c.num_clips, c.clip_len, 3, c.content_size, c.content_size).transpose(1, 2)
            return self.content(x).float().cpu()  # [C, content_dim]

    def features_from_track(self, track: FaceTrack, timings: dict[str, float] | None = None) -> VideoFeatures:
        """Stage 3: both feature paths for one video's face track."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        style = self.style_features(track.crops)
        t1 = time.perf_counter()
        content = self.content_features(track.crops)
        t2 = time.perf_counter()
        timings["style"], timings["content"] = t1 - t0, t2 - t1
        return VideoFeatures(content=content, style=style, source_indices=track.source_indices,
                             timestamps=track.timestamps, boxes=track.boxes, probs=track.probs,
                             fallback=track.fallback)

    def extract_features(self, path: str | Path, timings: dict[str, float] | None = None) -> VideoFeatures:
        """Frames → faces → features for one video: what the feature cache stores."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        frames = self.read(path)
        t1 = time.perf_counter()
        track = self.faces(frames)
        timings["sampling"], timings["faces"] = t1 - t0, time.perf_counter() - t1
        return self.features_from_track(track, timings)

    def classify(self, content: torch.Tensor, style: torch.Tensor) -> FusionOutput:
        """Stage 4: the head on a batch of videos' features ([B, C, Dc], [B, T, L, Ds])."""
        with torch.inference_mode():
            return self.fusion(content.to(self.device).float(), style.to(self.device).float())

    def decide(self, p_fake: float | None, face_found_ratio: float) -> tuple[str, str]:
        """Label and a one-line message for a probability, honouring untrained heads and no-face videos."""
        c = self.config
        if face_found_ratio < c.min_face_ratio:
            return "no_face", (f"a face was found in only {face_found_ratio:.0%} of the sampled frames "
                               f"(needs {c.min_face_ratio:.0%}); StyleFusion judges faces, so no verdict")
        if not c.trained or p_fake is None:
            return "untrained", ("this checkpoint's fusion head is untrained: its output is not a verdict. "
                                 "Load a trained checkpoint to detect deepfakes.")
        if abs(p_fake - c.threshold) < c.uncertain_margin:
            return "uncertain", f"p_fake {p_fake:.3f} is within {c.uncertain_margin} of the threshold {c.threshold:.3f}"
        if p_fake >= c.threshold:
            return "fake", f"p_fake {p_fake:.3f} >= threshold {c.threshold:.3f}"
        return "real", f"p_fake {p_fake:.3f} < threshold {c.threshold:.3f}"

    def result_from_features(self, path: str | Path, feats: VideoFeatures, timings: dict[str, float],
                             video: dict[str, Any] | None = None) -> DetectionResult:
        """Run the head on one video's features and build the explained result."""
        t0 = time.perf_counter()
        out = self.classify(feats.content[None], feats.style[None])
        timings["head"] = time.perf_counter() - t0
        p = float(torch.sigmoid(out.logits[0]).item())
        label, message = self.decide(p, feats.face_found_ratio)
        p_fake = p if self.config.trained else None
        flat = feats.style.flatten(1)
        flow = torch.cat([torch.zeros(1), (flat[1:] - flat[:-1]).norm(dim=1)]).tolist()
        attention = out.attention[0].float().cpu().tolist()
        frames = [
            FrameResult(int(feats.source_indices[i]), float(feats.timestamps[i]),
                        feats.boxes[i].tolist(), float(feats.probs[i]), bool(feats.fallback[i]),
                        float(flow[i]), float(attention[i]))
            for i in range(len(feats.source_indices))
        ]
        return DetectionResult(
            path=str(path), label=label, p_fake=p_fake, threshold=float(self.config.threshold),
            uncertain_margin=float(self.config.uncertain_margin),
            face_found_ratio=feats.face_found_ratio, frames=frames, timings=timings,
            checkpoint=self.identity(), message=message, video=video or {},
            style_latents=flat.numpy(),
        )

    def detect(self, path: str | Path, return_crops: bool = False,
               progress: ProgressFn | None = None) -> DetectionResult:
        """The whole pipeline for one video.

        Args:
            path: the video file.
            return_crops: keep the [T, S, S, 3] face crops on the result (for display).
            progress: called as ``progress(stage, fraction)`` with stages ``sampling``, ``faces``,
                ``features``, ``verdict``.

        Raises:
            VideoReadError: the file cannot be read as a video.
        """
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        report("sampling", 0.0)
        t0 = time.perf_counter()
        frames = self.read(path)
        timings["sampling"] = time.perf_counter() - t0
        report("faces", 0.25)
        t0 = time.perf_counter()
        track = self.faces(frames)
        timings["faces"] = time.perf_counter() - t0
        report("features", 0.5)
        feats = self.features_from_track(track, timings)
        report("verdict", 0.9)
        result = self.result_from_features(path, feats, timings, video=frames.info.to_dict())
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        if return_crops:
            result.crops = track.crops
        report("verdict", 1.0)
        return result


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def read_weights(weights: str | Path, expected: dict[str, torch.Tensor],
                 config: StyleFusionConfig) -> dict[str, torch.Tensor]:
    """Tensors of ``model.safetensors`` after checking keys, shapes and the config digest.

    ``expected`` may hold meta tensors: only names and shapes are used, and each tensor is read
    only after every key and shape has been checked against the file's header.
    """
    from safetensors import SafetensorError, safe_open

    weights = Path(weights)
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{weights}: {size / 1e9:.1f} GB is too large for a StyleFusion checkpoint")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            keys = set(f.keys())
            missing = sorted(set(expected) - keys)
            unexpected = sorted(keys - set(expected))
            if missing or unexpected:
                raise CheckpointError(_key_error(weights, missing, unexpected))
            for k, v in expected.items():
                shape = tuple(f.get_slice(k).get_shape())
                if shape != tuple(v.shape):
                    raise CheckpointError(
                        f"{weights}: {k} has shape {list(shape)}, the config expects "
                        f"{list(v.shape)} (config.json does not match the weights)")
            digest = metadata.get("stylefusion_config_sha256")
            if digest is not None and digest != _config_digest(json.dumps(config.to_dict(), sort_keys=True)):
                raise CheckpointError(
                    f"{weights}: written for a different config.json (an interrupted save or files "
                    "mixed from two checkpoints)")
            return {k: f.get_tensor(k) for k in expected}
    except SafetensorError as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _key_error(weights: Path, missing: list[str], unexpected: list[str]) -> str:
    def fmt(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {fmt(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {fmt(unexpected)}")
    return f"{weights}: does not match its config.json; " + "; ".join(parts)


def _looks_like_path(ref: str) -> bool:
    """Hub repo ids are ``name`` or ``org/name``; anything else path-like is a missing folder."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref


def resolve_checkpoint(ref: str | os.PathLike, revision: str | None = None, **hub_kwargs: Any) -> Path:
    """A local folder for a checkpoint reference (folder, or hub repo id fetched/cached)."""
    ref_str = str(ref)
    path = Path(ref_str).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{ref_str}: is a file; give the checkpoint folder (with {CONFIG_NAME} "
                              f"and {WEIGHTS_NAME}) or a hub repo id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(ref_str)
    except HFValidationError:
        raise CheckpointError(f"{ref_str}: no such checkpoint folder (and not a valid hub repo id)") from None
    if isinstance(ref, os.PathLike) or _looks_like_path(ref_str):
        raise CheckpointError(f"{ref_str}: no such checkpoint folder")
    try:
        folder = snapshot_download(ref_str, revision=revision,
                                   allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md", *UNSAFE_WEIGHTS],
                                   **hub_kwargs)
    except Exception as exc:  # network, auth, missing repo, offline cache miss: all one message
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        hint = ("HF_HUB_OFFLINE is set and the repo is not in the hub cache" if offline else
                "check the repo id, your network and HF_TOKEN, or pass a local checkpoint folder")
        raise CheckpointError(f"{ref_str}: not a local folder, and cannot fetch it as a Hugging Face hub "
                              f"repo ({type(exc).__name__}); {hint}") from None
    return Path(folder)


def _short_card(config: StyleFusionConfig) -> str:
    status = ("trained on " + json.dumps(config.training.get("data_summary") or config.training.get("dataset")))\
        if config.trained else "UNTRAINED fusion head: its outputs are not verdicts"
    return (f"---\nlibrary_name: stylefusion\ntags:\n- deepfake-detection\n- video-classification\n---\n"
            f"# StyleFusion checkpoint ({config.preset})\n\nStatus: {status}.\n\n"
            "```python\nfrom stylefusion import StyleFusionDetector\n"
            "det = StyleFusionDetector.from_pretrained(\"<this repo or folder>\")\n"
            "print(det.detect(\"video.mp4\").to_dict())\n```\n")


def init_checkpoint(preset: str, out_dir: str | Path, seed: int = 0, **overrides: Any) -> StyleFusionDetector:
    """Write a checkpoint with random weights, marked untrained (for tests and for conversion)."""
    torch.manual_seed(seed)
    model = StyleFusionDetector(preset_config(preset, **overrides))
    model.config.provenance = {"init": {"preset": preset, "seed": seed}, "created_by": f"stylefusion {__version__}"}
    model.save_pretrained(out_dir)
    return model.eval()


__all__ = ["StyleFusionDetector", "init_checkpoint", "resolve_checkpoint", "ConfigError", "StyleFusionError"]
