"""The model card (README.md) of a StyleFusion checkpoint, rendered from its config alone.

One card for every way a checkpoint leaves the machine: ``save_pretrained`` writes it next to the
weights, ``stylefusion card`` prints or writes it, ``stylefusion push`` uploads it. It is a free
function over the typed :class:`~stylefusion.config.StyleFusionConfig` (as lerobot's
``generate_model_card``), so a card can be rendered from a checkpoint's ``config.json`` alone,
without torch and without the weights.

What the card says comes from the config and nothing else:

- whether the head is trained (``config.trained``); an untrained checkpoint's card says so first
  and reports no metrics;
- what it was trained on (``training.data_summary``, ``datasets``, ``counts``, ``val_source``);
- how an answer is decided (:func:`decision_rows`, from :mod:`stylefusion.decision`, which needs
  neither torch nor OpenCV): the temperature, the threshold, the uncertain band that always holds
  the threshold (so a ``fake``/``real`` answer never contradicts its conformal prediction set),
  the out-of-domain limit and the input-quality limits;
- the validation metrics ``stylefusion train`` recorded (``training.val_metrics``: AUC, AP, EER,
  and accuracy, precision, recall and F1 at the decision threshold) and how the threshold was
  chosen (``training.threshold_source``);
- the preprocessing the weights expect, the upstream weights' licences, the provenance.

The YAML front matter is built with ``huggingface_hub.ModelCardData`` (what the hub mixin uses);
the body is ``templates/model_card.md.j2``, shipped inside the package. Mappings are listed in
sorted order, so a config renders the same card before and after its JSON round trip.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stylefusion import __version__
from stylefusion.config import StyleFusionConfig, TrainingRecord
from stylefusion.errors import StyleFusionError

TEMPLATE = "model_card.md.j2"
#: Shown in the usage examples when the card does not know the repo it will live in.
REF_PLACEHOLDER = "<this repo id or folder>"

#: ``training.val_metrics`` keys shown in the metrics table, in order, with the row's name.
METRIC_ROWS = (
    ("auc", "AUC (ROC)"),
    ("ap", "average precision"),
    ("eer", "equal error rate"),
    ("accuracy", "accuracy at the threshold"),
    ("balanced_accuracy", "balanced accuracy at the threshold"),
    ("precision", "precision (fake) at the threshold"),
    ("recall", "recall (fake) at the threshold"),
    ("f1", "F1 (fake) at the threshold"),
    ("loss", "loss (weighted BCE, best epoch)"),
)
#: Keys of ``val_metrics`` that are not rows: sizes go in the sentence, the matrix in its own table.
_NOT_ROWS = {"n", "n_real", "n_fake", "threshold", "confusion_matrix", "classification_report"}


class CardError(StyleFusionError):
    """The card cannot be rendered (jinja2 missing, or a template error)."""


def format_metric(value: Any) -> str:
    """How the card writes a number: floats to 4 decimals, ``None`` as ``n/a``.

    Public so tests (and anyone comparing a card with ``config.json``) format the same way.
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cell(value: Any) -> str:
    """A markdown table cell: numbers as :func:`format_metric`, containers as compact JSON."""
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)
    else:
        text = format_metric(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _option(value: Any) -> str:
    """A training option as written on the command line (``lr=0.003``, not ``0.0030``)."""
    return f"{value:g}" if isinstance(value, float) else _cell(value)


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the metrics table: the known metrics first, other scalars after."""
    rows = [(name, format_metric(metrics[key])) for key, name in METRIC_ROWS if key in metrics]
    known = {key for key, _ in METRIC_ROWS} | _NOT_ROWS
    rows += [(key, _cell(value)) for key, value in sorted(metrics.items())
             if key not in known and not isinstance(value, (dict, list))]
    return rows


def decision_rows(config: StyleFusionConfig) -> list[tuple[str, str]]:
    """(what, value) rows of the card's "How an answer is decided" table: every number the
    detector's decision rests on (:mod:`stylefusion.decision`), and how it was obtained."""
    from stylefusion.decision import checkpoint_decision, rates_sentence

    c = config
    cal = c.calibration
    d = checkpoint_decision(c)
    rows: list[tuple[str, str]] = []
    if cal is None:
        state = ("untrained head: no answer is ever a verdict" if not c.trained else
                 "**uncalibrated** (trained before calibration existed): raw sigmoid, fixed band, no "
                 "validation rates, no out-of-domain check")
        rows.append(("calibration", state))
    else:
        rows.append(("probability", f"sigmoid(logit / T), temperature T = {cal.temperature:.4f} fitted on validation "
                                    f"segments (ECE {format_metric(cal.ece_before)} → {format_metric(cal.ece_after)}, "
                                    f"Brier {format_metric(cal.brier_before)} → {format_metric(cal.brier_after)})"))
    threshold = f"{c.threshold:.4f}"
    if cal is not None:
        training = c.training
        how = training.threshold_source if training and training.threshold_source else f"policy {c.threshold_policy}"
        threshold += f" (policy `{c.threshold_policy}`: {how})"
        rates = rates_sentence(d)
        if rates:
            threshold += f"; {rates}"
    elif c.trained:
        threshold += " (as recorded; no policy or validation rates)"
    else:
        threshold += " (the default; an untrained head has no calibrated threshold)"
    rows.append(("decision threshold", _cell(threshold)))
    if d.band is not None:
        band = f"[{d.band[0]:.4f}, {d.band[1]:.4f}] → `uncertain`"
        rows.append(("uncertain band", _cell(f"{band}; {d.band_source}")))
    elif cal is not None:  # calibrated, but no conformal quantile recorded
        rows.append(("uncertain band", _cell("none: this checkpoint records no conformal quantile, so the threshold "
                                             "alone decides and no answer carries a prediction-set guarantee")))
    if cal is not None and cal.has_ood:
        rows.append(("out of domain", _cell(
            f"Mahalanobis distance of the fused embedding and mean features to {cal.ood_train_segments} "
            "training segments > "
            f"{cal.ood_threshold:.4f} (the {cal.ood_percentile:g}th percentile on validation, where it flagged "
            f"{cal.ood_val_flagged:.1%} of segments) → `uncertain`, p_fake still shown")))
    limits = (f"face ≥ {c.min_face_px:g} px, sharpness ≥ {c.min_sharpness:g}, brightness in "
              f"[{c.min_brightness:g}, {c.max_brightness:g}] → else `unsupported`")
    source = cal.quality_source if cal is not None and cal.quality_source else "documented defaults"
    rows.append(("input quality", _cell(f"{limits} ({source})")))
    history = (f"mean H.264 quantiser > {c.max_h264_qp:g} (other codecs: bits per pixel < {c.min_bpp:g}) → "
               f"heavily recompressed; recapture score ≥ {c.min_recapture_score} → possible screen recording; "
               "either → `uncertain`, p_fake still shown")
    source = cal.history_source if cal is not None and cal.history_source else "documented defaults"
    rows.append(("processing history", _cell(f"{history} ({source})")))
    return rows


def robustness_rows(training: TrainingRecord | None) -> list[tuple[str, str, str, str, str]]:
    """(condition, AUC, FPR, TPR, answered) rows of the card's "How it holds up" table, from
    ``training.robustness`` (``stylefusion train --robustness``); [] when it was not measured."""
    cells = (training.robustness or {}).get("cells") if training else None
    if not isinstance(cells, list):
        return []

    def pct(v: Any) -> str:
        return "–" if not isinstance(v, (int, float)) else f"{v:.0%}"

    rows = []
    for c in cells:
        if not isinstance(c, dict):
            continue
        what = "clean (as given)" if c.get("name") == "clean" else str(c.get("description") or c.get("condition"))
        rows.append((_cell(what), format_metric(c.get("auc")), pct(c.get("fpr")), pct(c.get("tpr")),
                     pct(c.get("answered"))))
    return rows


def _confusion(metrics: dict[str, Any]) -> list[list[int]] | None:
    cm = metrics.get("confusion_matrix")
    ok = (isinstance(cm, list) and len(cm) == 2
          and all(isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) for v in r) for r in cm))
    return cm if ok else None


def _val_description(training: TrainingRecord) -> str:
    m = training.val_metrics
    parts = []
    if isinstance(m.get("n"), int):
        sizes = f"{m['n']} videos"
        if isinstance(m.get("n_real"), int) and isinstance(m.get("n_fake"), int):
            sizes += f": {m['n_real']} real, {m['n_fake']} fake"
        parts.append(sizes)
    if training.val_source:
        parts.append(training.val_source)
    return "; ".join(parts) or "the validation split"


def _counts_text(counts: dict[str, dict[str, int]]) -> str:
    order = {"train": 0, "val": 1, "test": 2}
    splits = sorted(counts, key=lambda s: (order.get(s, 3), s))
    return "; ".join(f"{s}: {counts[s].get('real', 0)} real + {counts[s].get('fake', 0)} fake"
                     for s in splits if isinstance(counts[s], dict))


def training_rows(training: TrainingRecord) -> list[tuple[str, str]]:
    """(field, value) rows of the card's training table.

    ``training.data`` and ``features.model`` are left out: they are paths on the machine that ran
    the training, which say nothing to a reader of the card.
    """
    rows: list[tuple[str, str]] = []
    if training.datasets:
        rows.append(("datasets", ", ".join(training.datasets)))
    if training.counts:
        rows.append(("videos", _cell(_counts_text(training.counts))))
    if training.val_source:
        rows.append(("validation data", _cell(training.val_source)))
    if training.threshold_source:
        rows.append(("threshold chosen by", _cell(training.threshold_source)))
    if training.fake_labels:
        rows.append(("labels of fake videos", _cell(training.fake_labels)))
    rows.append(("initial head", _cell(training.init_from) if training.init_from else "fresh (random init)"))
    if training.epochs_run is not None:
        best = f" (best: epoch {training.best_epoch})" if training.best_epoch is not None else ""
        rows.append(("epochs", f"{training.epochs_run}{best}"))
    recipe = dict(training.recipe)
    for key in ("optimizer", "scheduler", "loss"):
        if key in recipe:
            rows.append((key, _cell(recipe.pop(key))))
    skip = {"init_from", "model"}  # shown above / a local path
    # Sorted, so the card is the same before and after config.json's round trip (sorted keys).
    options = sorted((k, v) for k, v in recipe.items() if k not in skip and v is not None)
    if options:
        rows.append(("options", ", ".join(f"{k}={_option(v)}" for k, v in options)))
    for key in ("backbone_sha256", "preprocessing_sha256"):
        if key in training.features:
            rows.append((f"features: {key}", f"`{_cell(training.features[key])}`"))
    if training.history_file:
        rows.append(("per-epoch curves", f"`{training.history_file}` (written beside the checkpoint by training)"))
    return rows


def card_data(config: StyleFusionConfig) -> Any:
    """The card's YAML front matter as ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import ModelCardData

    tags = ["deepfake-detection", "video-classification", "stylegan", "pytorch",
            "pytorch_model_hub_mixin", "model_hub_mixin"]
    if not config.trained:
        tags.append("untrained")
    hub_datasets = config.training.hub_datasets if config.training else []
    return ModelCardData(
        library_name="stylefusion", pipeline_tag="video-classification", tags=tags,
        # The code is MIT; the weights inherit non-commercial upstream terms (see the card's table).
        license="other", license_name="stylefusion-upstream-noncommercial",
        datasets=list(hub_datasets) or None,  # only ids that exist on the Hub belong here
    )


def render_model_card(config: StyleFusionConfig, *, repo_id: str | None = None) -> str:
    """README.md of a checkpoint: intended use, limits, data, metrics, usage, upstream licences.

    Args:
        config: the checkpoint's config (``StyleFusionConfig.from_json_file(dir / "config.json")``).
        repo_id: the hub repo the card will live in, named in the title and usage examples.

    Raises:
        CardError: jinja2 is not installed, or the template cannot be rendered.
    """
    try:
        import jinja2
    except ImportError:
        raise CardError("rendering the model card needs jinja2: pip install 'jinja2>=3.1'") from None
    from huggingface_hub import ModelCard

    trained = bool(config.trained)
    training = config.training if trained else None
    if trained and training is None:  # validate() refuses this; keep the card honest anyway
        training = TrainingRecord()
    provenance = config.provenance if isinstance(config.provenance, dict) else {}
    init = provenance.get("init") if isinstance(provenance.get("init"), dict) else {}
    metrics = training.val_metrics if training else {}

    env = jinja2.Environment(loader=jinja2.PackageLoader("stylefusion", "templates"),
                             autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = format_metric
    try:
        text = env.get_template(TEMPLATE).render(
            card_data=card_data(config).to_yaml(), repo_id=repo_id, ref=repo_id or REF_PLACEHOLDER,
            config=config, trained=trained, training=training,
            style_levels=", ".join(str(i) for i in config.style_levels),
            training_rows=training_rows(training) if training else [],
            robustness_rows=robustness_rows(training), robustness=(training.robustness if training else {}) or {},
            metric_rows=metric_rows(metrics), confusion=_confusion(metrics), decision_rows=decision_rows(config),
            val_description=_val_description(training) if training else "",
            init_seed=init.get("seed"),
            provenance_items=[(k, _cell(v)) for k, v in sorted(provenance.items())],
            version=__version__,
        )
    except jinja2.TemplateError as exc:
        raise CardError(f"cannot render the model card ({type(exc).__name__}: {exc})") from None
    text = re.sub(r"\n{3,}", "\n\n", text)  # optional sections leave runs of blank lines
    return str(ModelCard(text))  # parses the front matter: a card the Hub cannot read fails here


__all__ = ["CardError", "card_data", "decision_rows", "format_metric", "metric_rows", "render_model_card",
           "robustness_rows", "training_rows"]
