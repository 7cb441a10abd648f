"""Find the main face in the sampled frames and cut square crops around it (the report's stage 2).

Steps, each callable alone (as in facenet-pytorch): ``detect`` (MTCNN on the frames in batches,
skipping the small-face pyramid levels on large frames) → ``select_track``
(pick the main face and follow the same person across frames by box overlap, instead of jumping to
whoever is largest in each frame) → ``crop`` (grow the box by the margin in source pixels, make it
square, keep it inside the frame, resize). A frame without a face falls back to a centre crop and is
flagged, so the result can say how much of the video had a face.

MTCNN's weights ship inside facenet-pytorch, so detection runs offline. We call its ``detect`` and
do selection and cropping ourselves: its batched ``forward`` raises when some frames have no face
(facenet-pytorch issue #224), and its margin is in output pixels, not the report's source pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stylefusion.config import StyleFusionConfig
from stylefusion.video import Frames

logger = logging.getLogger(__name__)

#: A face in the next frame continues the track if its box overlaps the previous one this much.
TRACK_IOU = 0.3
#: Pixels per MTCNN batch (frames x height x width), and at most DETECT_MAX_FRAMES frames: bounds
#: the float32 copy of the frames and the image pyramid. Measured on 2 cores, 32 frames: 720p is
#: fastest 8 at a time (2.17 s; 16: 2.54 s), 176x144 32 at a time (0.47 s; 8: 0.54 s).
DETECT_PIXELS = 8_000_000
DETECT_MAX_FRAMES = 32


@dataclass
class FaceTrack:
    """Face crops of the sampled frames, aligned with ``source_indices``.

    crops: [T, S, S, 3] uint8 RGB; boxes: [T, 4] float32 crop boxes (x1, y1, x2, y2) in source
    pixels; probs: [T] float32 MTCNN probability of the tracked face (0 for fallbacks);
    fallback: [T] bool, True where no face was found and a centre crop was used.
    """

    crops: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    fallback: np.ndarray
    source_indices: np.ndarray
    timestamps: np.ndarray

    @property
    def face_found_ratio(self) -> float:
        return float(1.0 - self.fallback.mean()) if len(self.fallback) else 0.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceCropper:
    """MTCNN face detection, main-face tracking and cropping, configured by a StyleFusionConfig."""

    def __init__(self, config: StyleFusionConfig, device: str | torch.device = "cpu"):
        from facenet_pytorch import MTCNN

        self.config = config
        self.device = torch.device(device)
        self.mtcnn = MTCNN(
            image_size=config.face_size, margin=0, min_face_size=config.mtcnn_min_face_size,
            thresholds=list(config.mtcnn_thresholds), factor=config.mtcnn_factor,
            post_process=False, select_largest=True, keep_all=True, device=self.device,
        )

    # --- step 1 ---------------------------------------------------------------------------------
    def detect(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """All face boxes and probabilities per frame, in the pixels of ``images``.

        MTCNN runs on batches of about :data:`DETECT_PIXELS` pixels. On frames whose long side exceeds
        ``config.detect_max_side`` its image pyramid starts as many levels later as downscaling to
        that side would (the smallest face searched grows from ``mtcnn_min_face_size`` to about 40
        px in 720p): the skipped fine levels are most of MTCNN's cost, while the levels that remain
        and the final box refinement run on the full-resolution frame, so faces larger than that
        get exactly the boxes of full-resolution detection (unlike detection on a downscaled copy,
        whose boxes drift by a few pixels).
        """
        from facenet_pytorch.models.utils.detect_face import detect_face

        h, w = images.shape[1:3]
        c = self.config
        min_face = float(c.mtcnn_min_face_size)
        if c.detect_max_side and max(h, w) > c.detect_max_side:
            skip = round(math.log(c.detect_max_side / max(h, w)) / math.log(c.mtcnn_factor))
            min_face /= c.mtcnn_factor ** max(0, skip)
        none = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
        if min(h, w) < min_face:
            return [none] * len(images)  # smaller than the smallest face MTCNN looks for
        m = self.mtcnn
        chunk = max(1, min(DETECT_MAX_FRAMES, DETECT_PIXELS // (h * w)))
        out = []
        for start in range(0, len(images), chunk):
            # The library's detection function with this call's smallest face, rather than
            # MTCNN.detect after setting m.min_face_size: the cropper is shared by concurrent
            # requests (the app) and must not hold per-video state.
            with torch.inference_mode():
                batch_boxes, _ = detect_face(images[start:start + chunk], min_face, m.pnet, m.rnet,
                                             m.onet, m.thresholds, m.factor, m.device)
            for b in batch_boxes:
                b = np.asarray(b, dtype=np.float32).reshape(-1, 5)  # x1, y1, x2, y2, probability
                if len(b) == 0:
                    out.append(none)
                    continue
                b = b[np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]]  # largest first, as MTCNN.detect
                out.append((np.ascontiguousarray(b[:, :4]), np.ascontiguousarray(b[:, 4])))
        return out

    # --- step 2 ---------------------------------------------------------------------------------
    def select_track(self, detections: list[tuple[np.ndarray, np.ndarray]]) -> list[int | None]:
        """Index of the main face's box in each frame (None where that person is not found).

        The track starts at the most confident large face of the video (the largest area weighted
        by probability) and is followed forwards and backwards by overlap with the previous box.
        When the person cannot be followed (no box overlaps enough) the track picks up the largest
        confident face again, since a long gap between sampled frames can move anyone far.
        """
        conf = self.config.min_face_confidence
        best, anchor = -1.0, None
        for t, (b, p) in enumerate(detections):
            for j in range(len(b)):
                if p[j] < conf:
                    continue
                area = float((b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]))
                if area * p[j] > best:
                    best, anchor = area * p[j], (t, j)
        chosen: list[int | None] = [None] * len(detections)
        if anchor is None:
            return chosen
        chosen[anchor[0]] = anchor[1]
        for direction in (range(anchor[0] + 1, len(detections)), range(anchor[0] - 1, -1, -1)):
            prev = detections[anchor[0]][0][anchor[1]]
            for t in direction:
                b, p = detections[t]
                candidates = [j for j in range(len(b)) if p[j] >= conf]
                if not candidates:
                    continue
                overlaps = [iou(prev, b[j]) for j in candidates]
                j = candidates[int(np.argmax(overlaps))]
                if max(overlaps) < TRACK_IOU:
                    areas = [(b[c, 2] - b[c, 0]) * (b[c, 3] - b[c, 1]) for c in candidates]
                    j = candidates[int(np.argmax(areas))]
                chosen[t] = j
                prev = b[j]
        return chosen

    # --- step 3 ---------------------------------------------------------------------------------
    def crop_box(self, box: np.ndarray | None, height: int, width: int) -> np.ndarray:
        """Square crop box in frame pixels: the face box grown by the margin, or a centre crop."""
        if box is None:
            side = min(height, width)
            x1, y1 = (width - side) / 2, (height - side) / 2
            return np.array([x1, y1, x1 + side, y1 + side], np.float32)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(box[2] - box[0], box[3] - box[1]) * (1.0 + self.config.face_margin)
        side = min(side, height, width)  # larger than the frame: the whole short side
        x1 = float(np.clip(cx - side / 2, 0, width - side))  # shift inside rather than cut
        y1 = float(np.clip(cy - side / 2, 0, height - side))
        return np.array([x1, y1, x1 + side, y1 + side], np.float32)

    def crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        size = self.config.face_size
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        patch = image[y1:y2, x1:x2]
        interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
        return cv2.resize(patch, (size, size), interpolation=interp)

    # --- all steps ------------------------------------------------------------------------------
    def __call__(self, frames: Frames) -> FaceTrack:
        images = frames.images
        t, h, w = images.shape[:3]
        detections = self.detect(images)
        chosen = self.select_track(detections)
        size = self.config.face_size
        crops = np.empty((t, size, size, 3), np.uint8)
        boxes = np.empty((t, 4), np.float32)
        probs = np.zeros(t, np.float32)
        fallback = np.zeros(t, bool)
        for i in range(t):
            j = chosen[i]
            face = None if j is None else detections[i][0][j]
            box = self.crop_box(face, h, w)
            crops[i] = self.crop(images[i], box)
            boxes[i] = box / frames.info.decoded_scale  # report in source pixels
            if j is None:
                fallback[i] = True
            else:
                probs[i] = detections[i][1][j]
        if fallback.any():
            logger.info("%s: no face in %d of %d sampled frames (centre crop used)",
                        frames.info.path, int(fallback.sum()), t)
        return FaceTrack(crops, boxes, probs, fallback, frames.source_indices, frames.timestamps)
