"""Faces: find them, follow each person through a shot, know them again after a cut, crop them.

Steps, each callable alone (as in facenet-pytorch):

1. :meth:`FaceCropper.detect`: MTCNN on frames in batches (facenet-pytorch's ``detect_face``).
2. :func:`track_faces`: the faces of consecutive scan frames of one shot linked into one
   :class:`Track` per person. **Geometry decides continuity** (box overlap, centre shift and size,
   with hard gates); appearance only breaks ties between faces that all pass the gates, and never
   vetoes the only face inside them. A manipulated face (a colour-transfer flicker, a blurred or
   noisy frame, a seam) is still where the face was, so manipulation cannot split a track.
3. :func:`reidentify`: tracks of different shots, gaps and windows that are one person get one id,
   by :func:`identity_descriptor` (a descriptor that colour, brightness, blur and noise changes of
   the face do not move much) with plausibility gates; when unsure, two ids, never a merge.
4. :meth:`FaceCropper.crop_box` / :meth:`FaceCropper.crop`: grow the box by the margin in source
   pixels, make it square, keep it inside the frame, resize.

Shot cuts come from :func:`frame_signature` and :func:`cut_distance` (whole-frame colour layout).
MTCNN's weights ship inside facenet-pytorch, so detection runs offline. We call its ``detect_face``
and do selection and cropping ourselves: its batched ``forward`` raises when some frames have no
face (facenet-pytorch issue #224), and its margin is in output pixels, not the report's source pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from stylefusion.config import StyleFusionConfig
from stylefusion.results import face_found_ratio

logger = logging.getLogger(__name__)

#: Pixels per MTCNN batch (frames x height x width), and at most DETECT_MAX_FRAMES frames: bounds
#: the float32 copy of the frames and the image pyramid (about 8 frames of 720p, 32 of 176x144;
#: benchmarks/README.md has the measurements).
DETECT_PIXELS = 8_000_000
DETECT_MAX_FRAMES = 32


@dataclass
class FaceTrack:
    """Face crops of one judged segment, aligned with ``source_indices``.

    crops: [T, S, S, 3] uint8 RGB; boxes: [T, 4] float32 crop boxes (x1, y1, x2, y2) in source
    pixels; probs: [T] float32 MTCNN probability of the person's face in that frame (0 where it
    was not detected and its box was interpolated from the frames around it, or for fallbacks);
    fallback: [T] bool, True where no person is followed and a centre crop was used.
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


def box_size(box: np.ndarray) -> float:
    """Face size: the square root of the box's area (same units as the box)."""
    return math.sqrt(max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1])))


# --- shot cuts -----------------------------------------------------------------------------------
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




# --- identity ------------------------------------------------------------------------------------
#: The identity descriptor reads the inner face: the central IDENTITY_INNER of the detector's box
#: (no background, little hair), as a grayscale IDENTITY_SIDE x IDENTITY_SIDE thumbnail.
IDENTITY_INNER = 0.8
IDENTITY_SIDE = 24


def identity_descriptor(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """L2-normalised descriptor of the face in ``box`` (pixels of the RGB ``image``) for
    re-identification, built to be blind to what a manipulation or an edit changes.

    Gradient-orientation histograms (3 x 3 cells, 8 orientations, each cell normalised) of the
    inner face as a zero-mean, unit-variance grayscale thumbnail: a colour gain or offset, a
    brightness change and a tint are removed by the normalisation, a blur or noise moves the
    small thumbnail's gradients little, and per-cell normalisation keeps contrast out. It describes
    the layout of the face (eyes, brows, nose, mouth) rather than its colours, so a face swap's
    colour flicker does not move it. It is not a face recogniser: it only decides whether two
    tracks of one video (across a cut or a gap) are the same person, with gates and a threshold
    measured on the shared clips (``benchmarks/bench_reid.py``); when unsure they stay two people.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * IDENTITY_INNER / 2, (y2 - y1) * IDENTITY_INNER / 2
    height, width = image.shape[:2]
    xa, ya = int(max(0.0, math.floor(cx - half_w))), int(max(0.0, math.floor(cy - half_h)))
    xb, yb = int(min(float(width), math.ceil(cx + half_w))), int(min(float(height), math.ceil(cy + half_h)))
    patch = image[ya:max(yb, ya + 1), xa:max(xb, xa + 1)]
    if patch.size == 0:
        patch = np.zeros((1, 1, 3), np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (IDENTITY_SIDE, IDENTITY_SIDE), interpolation=cv2.INTER_AREA)
    small = (small - small.mean()) / (small.std() + 1e-3)
    # A mirrored picture (a flipped selfie, an edit) is the same person: the descriptor of the face
    # plus that of its mirror image is the same for both.
    return _unit(_orientation_cells(small) + _orientation_cells(small[:, ::-1]))


def _orientation_cells(small: np.ndarray) -> np.ndarray:
    """Square-rooted 8-bin gradient-orientation histograms of a 3 x 3 grid, each cell normalised."""
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    bins = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * 8).astype(np.int64), 7)  # unsigned orientation
    cells, step = [], small.shape[0] // 3
    for i in range(3):
        for j in range(3):
            sl = (slice(i * step, (i + 1) * step), slice(j * step, (j + 1) * step))
            hist = np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=8)
            cells.append(hist / (np.linalg.norm(hist) + 1e-6))
    return np.sqrt(np.concatenate(cells))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


# --- records of the scan -------------------------------------------------------------------------
@dataclass
class Face:
    """One detected face of a scan frame: box (x1, y1, x2, y2) in SOURCE pixels, MTCNN probability,
    identity descriptor."""

    box: np.ndarray
    prob: float
    descriptor: np.ndarray


@dataclass
class ScanFrame:
    """One frame the scan looked at: where it is, which window and shot, what faces it holds."""

    index: int  # source frame index (presentation order)
    time: float  # seconds from the first frame
    window: int
    faces: list[Face]
    signature: np.ndarray  # frame_signature, for shot cuts
    brightness: float  # mean luma (0-255) of the frame: "too dark to find a face"
    #: MTCNN's boxes and probabilities in the pixels of the FULL-SIZE read, when the scan read the
    #: frame at full size (a segment on this frame reuses them); None for frames read small.
    detections: tuple[np.ndarray, np.ndarray] | None = None
    shot: int = -1


@dataclass(eq=False)  # identity: two tracks are two people even with equal boxes
class Track:
    """One person followed through consecutive scan frames of one shot.

    ``ks``: positions in the scan's frame list, in time order; ``boxes``/``probs``: per k, in source
    pixels; ``descriptor``: the L2-normalised mean of its faces' identity descriptors; ``person``:
    the id :func:`reidentify` gives it (the same for every track of one person in the video).
    """

    shot: int
    ks: list[int] = field(default_factory=list)
    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    probs: dict[int, float] = field(default_factory=dict)
    descriptor_sum: np.ndarray | None = None
    person: int = -1

    @property
    def descriptor(self) -> np.ndarray:
        return _unit(self.descriptor_sum) if self.descriptor_sum is not None else np.zeros(0, np.float32)

    def add(self, k: int, face: Face) -> None:
        self.ks.append(k)
        self.boxes[k], self.probs[k] = face.box, face.prob
        self.descriptor_sum = face.descriptor.astype(np.float64) if self.descriptor_sum is None \
            else self.descriptor_sum + face.descriptor

    @property
    def mean_size(self) -> float:
        return float(np.mean([box_size(b) for b in self.boxes.values()])) if self.boxes else 0.0


# --- tracking ------------------------------------------------------------------------------------
def _link_cost(config: StyleFusionConfig, box_a: np.ndarray, box_b: np.ndarray, similarity: float,
               gap: int) -> float | None:
    """Cost of saying that face ``b`` continues the track whose last box is ``box_a``, ``gap`` scan
    frames later; None when a geometric gate fails (then they are never the same track).

    Gates (relaxed by sqrt(gap), as the spread of a random walk grows): the centre moves at most
    ``track_max_shift`` face sizes (face size = sqrt(box area), the mean of the two), the larger
    face is at most ``track_max_size_ratio`` times the smaller (sides). The cost adds (1 - IoU),
    each gated quantity as a fraction of its gate and (gap - 1), so that a track seen in the
    previous frame wins over one being revived; ``0.5 * (1 - similarity)`` of the identity
    descriptors then only orders candidates that passed every gate. There is no appearance gate:
    a colour flicker, a blur or a seam is what a manipulated face looks like frame to frame, and
    must not end its track.
    """
    sa, sb = box_size(box_a), box_size(box_b)
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
    return ((1.0 - iou(box_a, box_b)) + shift / max_shift + log_ratio / max_log_ratio
            + 0.5 * (1.0 - similarity) + (gap - 1))


def _assign(costs: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, col) of the minimum-cost assignment among the finite entries of ``costs``."""
    from scipy.optimize import linear_sum_assignment

    if costs.size == 0 or not np.isfinite(costs).any():
        return []
    finite = np.isfinite(costs)
    big = float(costs[finite].max()) * 10 + 1e6  # worse than any feasible total
    rows, cols = linear_sum_assignment(np.where(finite, costs, big))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if finite[r, c]]




def track_faces(frames: list[ScanFrame], config: StyleFusionConfig) -> list[Track]:
    """Every confident face of the scan linked into one :class:`Track` per person and shot.

    Frame by frame in time order, the faces (probability >= ``min_face_confidence``) are assigned
    to the open tracks of the same shot by ``scipy.optimize.linear_sum_assignment`` on
    :func:`_link_cost`; a face left unassigned starts a new track. A track may miss its face for up
    to ``track_max_gap - 1`` scan frames (a hand in front of the face, a head turned away), with
    the gates relaxed; a new shot (``ScanFrame.shot``) ends every track. Two faces of one frame
    are never the same track. Returns the tracks in order of their first frame.
    """
    conf = config.min_face_confidence
    max_gap = int(config.track_max_gap)
    done: list[Track] = []
    open_tracks: list[Track] = []
    shot = None
    for k, frame in enumerate(frames):
        if frame.shot != shot:
            done.extend(open_tracks)
            open_tracks, shot = [], frame.shot
        done.extend(t for t in open_tracks if k - t.ks[-1] > max_gap)
        open_tracks = [t for t in open_tracks if k - t.ks[-1] <= max_gap]
        faces = [f for f in frame.faces if f.prob >= conf and f.box[2] > f.box[0] and f.box[3] > f.box[1]]
        costs = np.full((len(open_tracks), len(faces)), np.inf)
        for i, tr in enumerate(open_tracks):
            desc = tr.descriptor
            for j, f in enumerate(faces):
                sim = float(desc @ f.descriptor) if desc.size == f.descriptor.size else 0.0
                c = _link_cost(config, tr.boxes[tr.ks[-1]], f.box, sim, k - tr.ks[-1])
                if c is not None:
                    costs[i, j] = c
        assigned = {j: i for i, j in _assign(costs)}
        for j, f in enumerate(faces):
            if j in assigned:
                open_tracks[assigned[j]].add(k, f)
            else:
                tr = Track(shot=frame.shot)
                tr.add(k, f)
                open_tracks.append(tr)
    done.extend(open_tracks)
    return sorted(done, key=lambda t: (t.ks[0], -t.mean_size))


#: Tracks compared at most by :func:`reidentify` (the longest ones).
REID_MAX_TRACKS = 400


def reidentify(tracks: list[Track], frames: list[ScanFrame], config: StyleFusionConfig) -> int:
    """Give every track a person id, one id per person for the whole video; returns how many.

    Tracks are merged into people by agglomeration: two groups become one person only when EVERY
    pair of their tracks is plausible (never on screen at the same time, a face-size ratio of at
    most 2 x ``track_max_size_ratio``) and their tracks' identity descriptors are on average at
    least ``reid_min_similarity`` alike (average linkage: one short track's noisy descriptor does
    not split a person seen in 30 shots). The most similar groups merge first. A person whose descriptor
    moves (a profile against a frontal view) keeps two ids: "when unsure, two people", never two
    people under one id. Ids are then numbered by on-screen time, 0 = the most present.
    """
    n = len(tracks)
    if n == 0:
        return 0
    # Only the REID_MAX_TRACKS longest tracks are compared (bounded time for a crowd in a video of
    # cuts); shorter ones beyond them keep an id of their own.
    order = sorted(range(n), key=lambda i: -len(tracks[i].ks))
    compared = sorted(order[:REID_MAX_TRACKS])
    m = len(compared)
    start = np.array([frames[tracks[i].ks[0]].time for i in compared])
    end = np.array([frames[tracks[i].ks[-1]].time for i in compared])
    size = np.array([max(tracks[i].mean_size, 1e-6) for i in compared])
    descs = np.stack([tracks[i].descriptor for i in compared])
    sim = descs @ descs.T
    veto = (start[:, None] <= end[None, :]) & (start[None, :] <= end[:, None])  # on screen together
    veto |= np.abs(np.log(size[:, None] / size[None, :])) > math.log(2.0 * config.track_max_size_ratio)
    # Average-linkage agglomeration with cannot-links: sums of pair similarities between groups,
    # group sizes, and a veto that a merged group inherits from both of its parts.
    sums = np.where(veto, 0.0, sim).astype(np.float64)
    count = np.ones(m)
    alive = np.ones(m, bool)
    members = [[i] for i in range(m)]
    while True:
        link = sums / np.outer(count, count)
        ok = ~veto & alive[:, None] & alive[None, :]
        np.fill_diagonal(ok, False)
        link = np.where(ok, link, -np.inf)
        a, b = np.unravel_index(int(np.argmax(link)), link.shape)
        if not link[a, b] >= config.reid_min_similarity:
            break
        sums[a, :] += sums[b, :]
        sums[:, a] += sums[:, b]
        veto[a, :] |= veto[b, :]
        veto[:, a] |= veto[:, b]
        count[a] += count[b]
        alive[b] = False
        members[a] += members[b]
    groups = [[compared[i] for i in members[k]] for k in range(m) if alive[k]]
    groups += [[i] for i in order[REID_MAX_TRACKS:]]

    def presence(g: list[int]) -> float:
        return sum(frames[tracks[i].ks[-1]].time - frames[tracks[i].ks[0]].time + 1e-3 * len(tracks[i].ks)
                   for i in g)

    groups.sort(key=lambda g: (-presence(g), min(tracks[i].ks[0] for i in g)))
    for pid, g in enumerate(groups):
        for i in g:
            tracks[i].person = pid
    return len(groups)


class FaceCropper:
    """MTCNN face detection and cropping, configured by a StyleFusionConfig and holding no per-video
    state (one cropper serves concurrent requests)."""

    def __init__(self, config: StyleFusionConfig, device: str | torch.device = "cpu"):
        from facenet_pytorch import MTCNN

        self.config = config
        self.device = torch.device(device)
        self.mtcnn = MTCNN(
            image_size=config.face_size, margin=0, min_face_size=config.mtcnn_min_face_size,
            thresholds=list(config.mtcnn_thresholds), factor=config.mtcnn_factor,
            post_process=False, select_largest=True, keep_all=True, device=self.device,
        )

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
