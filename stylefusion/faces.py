"""Find the faces in the sampled frames, follow each person, and cut square crops (the report's stage 2).

Steps, each callable alone (as in facenet-pytorch): ``detect`` (MTCNN on the frames in batches,
skipping the small-face pyramid levels on large frames) → ``track_people`` (every confident face
linked into one track per person: an assignment between consecutive sampled frames on box overlap,
position, size and appearance, with hard gates; a shot cut ends every track) → ``segment`` (T
crops of one person) → ``crop`` (grow the box by the margin in source pixels, make it square, keep
it inside the frame, resize). ``FaceCropper.__call__`` keeps the single "main face" path
(``select_track``), where a frame without that face falls back to a centre crop and is flagged.
:func:`link_across_windows` says which track of the next window continues which of the previous.

MTCNN's weights ship inside facenet-pytorch, so detection runs offline. We call its ``detect`` and
do selection and cropping ourselves: its batched ``forward`` raises when some frames have no face
(facenet-pytorch issue #224), and its margin is in output pixels, not the report's source pixels.

No face-recognition weights are available offline (facenet's InceptionResnetV1 downloads them), so
appearance is a colour histogram of the face and hair (:func:`appearance_descriptor`, measured
figures there). It does not identify people in general; it only has to tell the face a track
followed from another face that passes the geometric gates at the next sampled frame.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from stylefusion.config import StyleFusionConfig
from stylefusion.results import face_found_ratio
from stylefusion.video import Frames

logger = logging.getLogger(__name__)

#: Pixels per MTCNN batch (frames x height x width), and at most DETECT_MAX_FRAMES frames: bounds
#: the float32 copy of the frames and the image pyramid (about 8 frames of 720p, 32 of 176x144;
#: benchmarks/README.md has the measurements).
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
        return face_found_ratio(self.fallback)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# --- appearance and shot cuts ---------------------------------------------------------------------
#: The appearance region is the face box grown by this fraction of its width and height on each
#: side (forehead, hair, ears and a rim of what is around the head), and its hue x saturation bins.
APPEARANCE_GROW = 0.15
APPEARANCE_BINS = (16, 16)
#: Shot cuts: whole frames at this long side, a grid of GRID x GRID cells, hue x saturation bins per cell.
CUT_SIDE = 256
CUT_GRID = 4
CUT_BINS = (16, 8)


def _sqrt_hist(hsv: np.ndarray, bins: tuple[int, int]) -> np.ndarray:
    """Hue x saturation histogram, normalised and square-rooted: unit L2 norm, and the dot product
    of two of them is their Bhattacharyya coefficient (1 = identical distributions, 0 = disjoint)."""
    h = cv2.calcHist([hsv], [0, 1], None, list(bins), [0, 180, 0, 256]).ravel().astype(np.float64)
    total = h.sum()
    if total <= 0:
        h, total = np.ones_like(h), float(h.size)
    return np.sqrt(h / total).astype(np.float32)


def appearance_descriptor(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """L2-normalised appearance of the face in ``box`` (decoded pixels of the RGB ``image``).

    The hue x saturation histogram (16 x 16 bins, square-rooted) of the face box grown by
    :data:`APPEARANCE_GROW` per side (so hair and a rim of background count), resized to 32 x 32
    first. The similarity of two descriptors is their dot product, the Bhattacharyya coefficient
    of the two histograms, in [0, 1].

    Why this is enough here: it is not a face recogniser and need not be one. Position and size
    gates decide first; appearance only has to veto the link when another face passes them one to
    a few sampled frames later, and such a face (after a cut nobody detected, or where the tracked
    face vanished) nearly always comes with other light, hair, skin tone or background. A
    presenter and the Star Wars inset score at most 0.45, the two halves of a split screen 0.45.
    Brightness (HSV value) is left out, so fades, exposure changes and shadows do not break a
    track, and a histogram has no geometry, so a head turn or a hand in front of the mouth does
    not either. What it cannot do: two people in the same room and light (a woman and the small
    face in a framed photo behind her: up to 0.80; two friends in a selfie: 0.89) look alike to
    it, and only the position and size gates keep them apart.

    Measured on the clips in ``../shared/clips`` (32 frames each, 1 221 faces): the same person
    1 to 3 sampled frames apart scores at least 0.79 (1 % quantile 0.88; 3 396 pairs); different
    people of one clip within 3 frames score below 0.7 in 69 % of 1 871 pairs, faces of different
    clips in 83 % of 709 000. Grayscale thumbnails, LBP and gradient histograms of the box were
    measured too and left out: they follow pose and expression more than identity (a thumbnail
    correlation of one woman fell to -0.35 as she turned her head), so at a threshold that keeps
    every same-person pair they reject fewer different people than the colour histogram alone,
    and adding them to it did not help either.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    gw, gh = (x2 - x1) * APPEARANCE_GROW, (y2 - y1) * APPEARANCE_GROW
    height, width = image.shape[:2]
    xa, ya = int(max(0.0, math.floor(x1 - gw))), int(max(0.0, math.floor(y1 - gh)))
    xb, yb = int(min(float(width), math.ceil(x2 + gw))), int(min(float(height), math.ceil(y2 + gh)))
    patch = image[ya:max(yb, ya + 1), xa:max(xb, xa + 1)]
    if patch.size == 0:  # a box entirely outside the frame (never from MTCNN): no information
        patch = np.zeros((1, 1, 3), np.uint8)
    small = cv2.resize(np.ascontiguousarray(patch), (32, 32), interpolation=cv2.INTER_AREA)
    return _sqrt_hist(cv2.cvtColor(small, cv2.COLOR_RGB2HSV), APPEARANCE_BINS)


def frame_signature(image: np.ndarray) -> np.ndarray:
    """[CUT_GRID**2, bins] square-rooted hue x saturation histograms of a grid over the whole frame."""
    h, w = image.shape[:2]
    s = CUT_SIDE / max(h, w)
    small = cv2.resize(image, (max(CUT_GRID * 4, round(w * s)), max(CUT_GRID * 4, round(h * s))),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    sh, sw = hsv.shape[:2]
    return np.stack([_sqrt_hist(np.ascontiguousarray(hsv[i * sh // CUT_GRID:(i + 1) * sh // CUT_GRID,
                                                         j * sw // CUT_GRID:(j + 1) * sw // CUT_GRID]), CUT_BINS)
                     for i in range(CUT_GRID) for j in range(CUT_GRID)])


def cut_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Shot-cut distance of two frame signatures in [0, 1]: the median over the grid cells of the
    Hellinger distance of their colour histograms.

    A cut changes nearly every cell; motion, a changing picture-in-picture inset or a person who
    walks through changes a few, so the median ignores them. Hue and saturation only, so a fade or
    an exposure change is not a cut. Measured on 38 clips of ``../shared/clips`` (32 frames each):
    the shot cuts of ``real_facerec_short_hamilton.mp4`` score 0.58, 0.67 and 0.74 and a cut to
    the credits 1.0; of the 1 174 other steps between consecutive sampled frames the highest are a
    fade in from black (0.63 from the black frame, which holds no face to cut, then 0.46), then
    0.38 and 0.33; the inset changes of ``real_ffpp_004.mp4`` score 0.05 to 0.17.
    """
    bc = np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
    return float(np.median(np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))))


def _box_size(box: np.ndarray) -> float:
    return math.sqrt(max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1])))


def _link_cost(config: StyleFusionConfig, box_a: np.ndarray, refs: list[np.ndarray],
               box_b: np.ndarray, desc_b: np.ndarray, gap: int) -> float | None:
    """Cost of saying that face ``b`` continues the track whose last box is ``box_a``, ``gap``
    sampled frames later; None when a gate fails (then they are never the same person).

    Gates (after a gap of g frames the geometric ones are relaxed by sqrt(g), as the spread of a
    random walk grows): the centre moves at most ``track_max_shift`` face sizes (face size =
    sqrt(box area), the mean of the two), the larger face is at most ``track_max_size_ratio`` times
    the smaller (sides), and the appearance similarity to the track (its last face or its mean,
    whichever is higher) is at least ``track_min_appearance``. The cost adds up (1 - IoU) and each
    gated quantity as a fraction of its gate, plus (g - 1) so that a track seen in the previous
    frame wins over one that is being revived.
    """
    sa, sb = _box_size(box_a), _box_size(box_b)
    if sa <= 0 or sb <= 0:
        return None
    relax = math.sqrt(gap)
    max_shift = max(config.track_max_shift, 1e-6) * relax
    max_log_ratio = max(math.log(config.track_max_size_ratio), 1e-6) * relax
    ca = np.array([box_a[0] + box_a[2], box_a[1] + box_a[3]], np.float64) / 2
    cb = np.array([box_b[0] + box_b[2], box_b[1] + box_b[3]], np.float64) / 2
    shift = float(np.linalg.norm(ca - cb)) / ((sa + sb) / 2)
    log_ratio = abs(math.log(sa / sb))
    if shift > max_shift or log_ratio > max_log_ratio:
        return None
    similarity = max(float(desc_b @ r) for r in refs)
    if similarity < config.track_min_appearance:
        return None
    app_span = max(1.0 - config.track_min_appearance, 1e-6)
    return ((1.0 - iou(box_a, box_b)) + shift / max_shift + log_ratio / max_log_ratio
            + (1.0 - similarity) / app_span + (gap - 1))


def _assign(costs: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, col) of the minimum-cost assignment among the finite entries of ``costs``."""
    from scipy.optimize import linear_sum_assignment

    if costs.size == 0 or not np.isfinite(costs).any():
        return []
    finite = np.isfinite(costs)
    big = float(costs[finite].max()) * 10 + 1e6  # worse than any feasible total
    rows, cols = linear_sum_assignment(np.where(finite, costs, big))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if finite[r, c]]


def _max_gap(config: StyleFusionConfig) -> int:
    """``config.track_max_gap``: sampled frames a track may skip plus one (1: only consecutive
    frames are linked). 4 where the config has no such field yet: on the shared clips a face
    covered by hands or not found for 3 sampled frames must stay one track, and 4 is the fewest
    that allows it."""
    return int(config.track_max_gap)


def _time_order(frames: Frames) -> list[int]:
    """Indices t of the first sampled frame of each distinct source frame, in presentation order.

    Circular padding (a stretch with fewer source frames than T) repeats frames; linking runs on
    each picture once, and the repeats are the same picture, so they add nothing.
    """
    first: dict[int, int] = {}
    for t, s in enumerate(np.asarray(frames.source_indices).tolist()):
        first.setdefault(int(s), t)
    return [first[s] for s in sorted(first)]


@dataclass(eq=False)  # identity: tracks hold arrays, and two tracks are two people
class PersonTrack:
    """One person's boxes in one window's sampled frames (t = index into Frames, 0..T-1).

    boxes: t -> face box (x1, y1, x2, y2) in DECODED pixels of ``Frames.images``; probs: t -> MTCNN
    probability; descriptors: t -> :func:`appearance_descriptor` of that box; appearance: their
    L2-normalised mean (for linking across windows); first_t / last_t: its first and last frame in
    time. A repeated frame of circular padding is listed once (at its first t).
    """

    boxes: dict[int, np.ndarray]
    probs: dict[int, float]
    appearance: np.ndarray
    first_t: int
    last_t: int
    descriptors: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        """The t's where the track has a box, in time order."""
        return sorted(self.boxes)

    def distinct_frames(self, source_indices: np.ndarray) -> int:
        """Distinct source frames among its frames."""
        return len({int(source_indices[t]) for t in self.boxes})

    @property
    def mean_area(self) -> float:
        return float(np.mean([_box_size(b) ** 2 for b in self.boxes.values()])) if self.boxes else 0.0


class FaceCropper:
    """MTCNN face detection, one track per person (and the old main-face track), cropping; configured
    by a StyleFusionConfig and holding no per-video state (one cropper serves concurrent requests)."""

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
            # The library's detection function with this call's smallest face: the cropper is
            # shared by concurrent requests (the app) and must hold no per-video state.
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
                if max(overlaps) < self.config.track_iou:
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


    # --- every person ---------------------------------------------------------------------------
    def shot_cuts(self, frames: Frames, order: list[int] | None = None) -> list[bool]:
        """For each step between consecutive frames of ``order`` (default: the time order of the
        distinct sampled frames), whether it is a shot cut (:func:`cut_distance` above
        ``config.shot_cut_threshold``)."""
        order = _time_order(frames) if order is None else order
        signatures = [frame_signature(frames.images[t]) for t in order]
        return [cut_distance(a, b) > self.config.shot_cut_threshold
                for a, b in itertools.pairwise(signatures)]

    def track_people(self, frames: Frames,
                     detections: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[PersonTrack]:
        """Every confident face of the window's sampled frames, linked into one track per person.

        Frame by frame in time order, the faces (probability >= ``min_face_confidence``) are
        assigned to the open tracks by ``scipy.optimize.linear_sum_assignment`` on
        :func:`_link_cost` (IoU, centre shift, size ratio and appearance, with hard gates). A face
        left unassigned starts a new track; a track may skip frames where its face is not found
        (it keeps its last box) for up to ``track_max_gap - 1`` frames, with the gates relaxed; a
        shot cut between two sampled frames ends every track. Two faces of one frame are never the
        same track. Returns the tracks sorted by presence: distinct source frames, then mean box
        area, both descending. ``detections`` (from :meth:`detect`, in the pixels of
        ``frames.images``) is computed when not given.
        """
        images = frames.images
        if detections is None:
            detections = self.detect(images)
        if len(detections) != len(images):
            raise ValueError(f"{len(detections)} detections for {len(images)} frames")
        conf = self.config.min_face_confidence
        max_gap = _max_gap(self.config)
        order = _time_order(frames)
        cuts = self.shot_cuts(frames, order)
        finished: list[dict] = []
        open_tracks: list[dict] = []
        for k, t in enumerate(order):
            if k > 0 and cuts[k - 1]:
                logger.debug("%s: shot cut before sampled frame %d", frames.info.path, t)
                finished.extend(open_tracks)
                open_tracks = []
            finished.extend(tr for tr in open_tracks if k - tr["last_k"] > max_gap)
            open_tracks = [tr for tr in open_tracks if k - tr["last_k"] <= max_gap]
            boxes, probs = detections[t]
            faces = [(np.asarray(boxes[j], np.float32)[:4], float(probs[j])) for j in range(len(boxes))
                     if probs[j] >= conf and boxes[j][2] > boxes[j][0] and boxes[j][3] > boxes[j][1]]
            descs = [appearance_descriptor(images[t], b) for b, _ in faces]
            costs = np.full((len(open_tracks), len(faces)), np.inf)
            for i, tr in enumerate(open_tracks):
                refs = [tr["last_desc"], _unit(tr["desc_sum"])]
                for j, (b, _) in enumerate(faces):
                    c = _link_cost(self.config, tr["last_box"], refs, b, descs[j], k - tr["last_k"])
                    if c is not None:
                        costs[i, j] = c
            assigned = {j: i for i, j in _assign(costs)}
            for j, ((b, p), d) in enumerate(zip(faces, descs)):
                if j in assigned:
                    tr = open_tracks[assigned[j]]
                else:
                    tr = {"boxes": {}, "probs": {}, "descs": {}, "desc_sum": np.zeros_like(d)}
                    open_tracks.append(tr)
                tr["boxes"][t], tr["probs"][t], tr["descs"][t] = b, p, d
                tr["desc_sum"] = tr["desc_sum"] + d
                tr["last_box"], tr["last_desc"], tr["last_k"] = b, d, k
        tracks = [PersonTrack(boxes=tr["boxes"], probs=tr["probs"], appearance=_unit(tr["desc_sum"]),
                              first_t=min(tr["boxes"]), last_t=max(tr["boxes"]), descriptors=tr["descs"])
                  for tr in finished + open_tracks]
        src = frames.source_indices
        tracks.sort(key=lambda tr: (-tr.distinct_frames(src), -tr.mean_area, tr.first_t))
        return tracks

    def segment(self, frames: Frames, track: PersonTrack) -> FaceTrack:
        """T crops of one person: the frames where ``track`` has a box, in time order, repeated
        circularly to T (T = the number of sampled frames).

        This is the report's padding for videos shorter than T frames, applied to the person's
        span: no frame is decoded again (the window's sampled frames are all there is in memory,
        and a second decode per person would make cost grow with the number of people), and every
        crop is a real detection of that person, never a centre crop or an interpolated box. A
        person seen in n < T frames contributes each crop about T/n times, and, as with the
        report's padding, the sequence jumps back to the first crop at each wrap; such a segment
        is only judged when n >= ``min_person_frames`` (half of T by default). Boxes are the
        square crop boxes in source pixels; ``fallback`` is all False.
        """
        ts = track.frames
        if not ts:
            raise ValueError("empty track: no frame to crop")
        images = frames.images
        n_out, h, w = len(images), images.shape[1], images.shape[2]
        order = [ts[i % len(ts)] for i in range(n_out)]
        size = self.config.face_size
        crops = np.empty((n_out, size, size, 3), np.uint8)
        boxes = np.empty((n_out, 4), np.float32)
        probs = np.empty(n_out, np.float32)
        done: dict[int, int] = {}
        for i, t in enumerate(order):
            if t in done:  # a repeat of the padding: copy, do not crop again
                crops[i], boxes[i], probs[i] = crops[done[t]], boxes[done[t]], probs[done[t]]
                continue
            box = self.crop_box(track.boxes[t], h, w)
            crops[i] = self.crop(images[t], box)
            boxes[i] = box / frames.info.decoded_scale  # report in source pixels
            probs[i] = track.probs[t]
            done[t] = i
        idx = np.asarray(order, np.int64)
        return FaceTrack(crops, boxes, probs, np.zeros(n_out, bool),
                         np.asarray(frames.source_indices)[idx], np.asarray(frames.timestamps)[idx])

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


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def link_across_windows(prev: list[PersonTrack], prev_frames: Frames, nxt: list[PersonTrack],
                        nxt_frames: Frames, config: StyleFusionConfig) -> dict[int, int]:
    """Which track of the next window continues which track of the previous one: {next: prev}.

    The two windows must be temporally adjacent (the next starts where the previous ends). A
    previous track's last box and a next track's first box are linked with the gates and cost of
    :meth:`FaceCropper.track_people`, the gap being the sampled frames between them (the last
    frames of the previous window after that box, the first of the next before it, plus one); no
    pair is linked across a shot cut between those two frames, nor over more than
    ``track_max_gap`` frames. Each track continues at most one.
    """
    if not prev or not nxt:
        return {}
    max_gap = _max_gap(config)
    prev_order, nxt_order = _time_order(prev_frames), _time_order(nxt_frames)
    prev_pos = {t: k for k, t in enumerate(prev_order)}
    nxt_pos = {t: k for k, t in enumerate(nxt_order)}
    signatures: dict[tuple[int, int], np.ndarray] = {}

    def signature(side: int, t: int) -> np.ndarray:
        if (side, t) not in signatures:
            signatures[side, t] = frame_signature((prev_frames, nxt_frames)[side].images[t])
        return signatures[side, t]

    costs = np.full((len(nxt), len(prev)), np.inf)
    for i, a in enumerate(prev):
        ta = a.last_t
        refs = [a.descriptors.get(ta, a.appearance), a.appearance]
        for j, b in enumerate(nxt):
            tb = b.first_t
            gap = (len(prev_order) - 1 - prev_pos.get(ta, len(prev_order) - 1)) + nxt_pos.get(tb, 0) + 1
            if gap > max_gap:
                continue
            desc = b.descriptors.get(tb, b.appearance)
            c = _link_cost(config, a.boxes[ta], refs, b.boxes[tb], desc, gap)
            if c is None:
                continue
            if cut_distance(signature(0, ta), signature(1, tb)) > config.shot_cut_threshold:
                continue
            costs[j, i] = c
    return {j: i for j, i in _assign(costs)}
