"""Research pipeline: dataset manifests, the feature cache, extraction, training, evaluation.

Kept apart from the inference library (as open_clip keeps its training code apart): nothing in
``stylefusion`` imports this package, and the CLI imports each module only when its subcommand runs,
so ``pip install stylefusion`` users never pay for scikit-learn, matplotlib, plotly or TensorBoard.

Steps, each a module with ``add_<name>_arguments(parser)`` / ``run_<name>(args)`` for the CLI and a
``main(argv)`` for ``python -m`` and in-process tests:

- :mod:`.datasets` — official layouts (FaceForensics++, Celeb-DF v2, DFDC, real/fake folders)
  → one manifest (video_id, path, label, split, dataset, method); the record, its files and the
  one ``counts`` function live in :mod:`.manifest`.
- :mod:`.cache` — one safetensors file per video with its segments' features (every judged
  person in each analysed window) and the provenance that decides whether the entry can be reused;
  :mod:`.data` loads a cache's entries as tensors for training, one sample per segment.
- :mod:`.extract` — manifest → cache, resumable, sharded across ``torchrun`` ranks.
- :mod:`.train` — cache → trained fusion head, saved as a full checkpoint with a calibrated threshold.
- :mod:`.evaluate` and :mod:`.figures` — video-level metrics (:mod:`.metrics`, on scikit-learn),
  tables and the report's figures.
"""
