"""Publish StyleFusion to the Hugging Face Hub: model card, checkpoint upload, Space README header.

Kept outside the library on purpose (like a release script): it needs jinja2, PyYAML and network
access that ``pip install stylefusion`` users never need, and it reads a checkpoint as plain files
(``config.json`` + ``model.safetensors``) without importing torch. The functions are public so
``stylefusion push`` can call them:

- :func:`render_model_card` / :func:`write_model_card`: README.md from a checkpoint's config.json,
- :func:`stage_checkpoint`: the folder that would be uploaded,
- :func:`push_checkpoint`: stage + upload with ``huggingface_hub.upload_folder`` (``dry_run``),
- :func:`render_space_readme` / :func:`write_space_readme`: the Space README from ``Space.yaml``.

Every failure a user can cause raises :class:`PublishError` with a one-line message; ``main``
prints it and exits 1.

Usage::

    python hub/publish.py card --model DIR --out DIR
    python hub/publish.py push --model DIR --repo-id ORG/NAME [--dry-run] [--private]
    python hub/publish.py space-readme --space Space.yaml --out README_SPACE.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger("stylefusion.publish")

HUB_DIR = Path(__file__).resolve().parent
CARD_TEMPLATE = HUB_DIR / "model_card.md.j2"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Small side files that travel with the weights. Pickled weights (*.bin, *.pt, *.ckpt) never do:
# a hub checkpoint of ours is safetensors only.
EXTRA_PATTERNS = ("*.json", "*.txt", "*.csv", "*.yaml", "*.yml", "*.png", "*.md")
# Keys of Space.yaml that are ours, not Spaces header keys.
SPACE_OWN_KEYS = ("model", "model_placeholder")
SPACE_REQUIRED_KEYS = ("title", "sdk", "sdk_version", "app_file")
SHORT_DESCRIPTION_MAX = 60  # the Hub rejects longer ones


class PublishError(Exception):
    """A publishing step cannot proceed; the message is one line saying why and what to do."""


# ---------------------------------------------------------------------------------------------
# model card
# ---------------------------------------------------------------------------------------------
def load_checkpoint_config(model_dir: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json as a dict, after checking the folder is a checkpoint."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"{model_dir}: no such checkpoint folder")
    config_path = model_dir / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{model_dir}: no {CONFIG_NAME}; not a StyleFusion checkpoint folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{config_path}: cannot read it as JSON ({exc})") from None
    if not isinstance(config, dict) or "preset" not in config:
        raise PublishError(f"{config_path}: not a StyleFusion config (no 'preset' field)")
    return config


def _fmt(value: Any) -> str:
    """A table cell: floats to 4 decimals, containers as compact JSON, pipes escaped."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.4f}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, separators=(", ", ": "), default=str)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def metrics_table(metrics: Any) -> tuple[list[str], list[list[str]]]:
    """Columns and rows for the metrics recorded in a config, in any of the shapes training writes.

    Accepts ``{"auc": 0.9, ...}`` (one evaluation), ``{"celeb-df": {"auc": ...}, ...}`` (one row per
    evaluation set) or ``[{"dataset": ..., "auc": ...}, ...]``. Returns ``([], [])`` when there is
    nothing to show, so the card says so instead of printing an empty table.
    """
    if not metrics:
        return [], []
    if isinstance(metrics, list):
        sets = {}
        for i, entry in enumerate(metrics):
            if isinstance(entry, dict):
                entry = dict(entry)
                name = entry.pop("dataset", None) or entry.pop("name", None) or f"evaluation {i + 1}"
                sets[str(name)] = entry
        metrics = sets
    if not isinstance(metrics, dict):
        return [], []
    if all(isinstance(v, dict) for v in metrics.values()):
        names: list[str] = []
        for values in metrics.values():
            names += [k for k in values if k not in names]
        rows = [[_fmt(key)] + [_fmt(values[n]) if n in values else "" for n in names]
                for key, values in metrics.items()]
        return ["evaluation"] + names, rows
    return ["metric", "value"], [[_fmt(k), _fmt(v)] for k, v in metrics.items()]


def _front_matter(config: dict[str, Any], repo_id: str | None) -> str:
    import yaml

    training = config.get("training") or {}
    meta: dict[str, Any] = {
        "library_name": "stylefusion",
        "license": "other",
        "license_name": "stylefusion-upstream-noncommercial",
        "pipeline_tag": "video-classification",
        "tags": ["deepfake-detection", "video-classification", "stylegan", "pytorch",
                 "pytorch_model_hub_mixin", "model_hub_mixin"],
    }
    if not config.get("trained"):
        meta["tags"].append("untrained")
    datasets = training.get("hub_datasets")  # only ids that exist on the Hub belong here
    if isinstance(datasets, list) and datasets:
        meta["datasets"] = datasets
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


def render_model_card(config: dict[str, Any], *, repo_id: str | None = None,
                      template: str | Path = CARD_TEMPLATE) -> str:
    """README.md for a checkpoint: intended use, limits, data, metrics, usage, upstream licences."""
    try:
        import jinja2
    except ImportError:
        raise PublishError("rendering the model card needs jinja2: pip install jinja2") from None
    trained = bool(config.get("trained"))
    training = dict(config.get("training") or {})
    metrics = training.pop("metrics", None)
    columns, rows = metrics_table(metrics)
    dataset_summary = training.get("data_summary") or training.get("dataset") or "an unnamed dataset"
    provenance = config.get("provenance") or {}
    init = provenance.get("init") if isinstance(provenance.get("init"), dict) else {}
    levels = config.get("style_levels") or [9]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(template).parent)),
                             autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    try:
        text = env.get_template(Path(template).name).render(
            front_matter=_front_matter(config, repo_id), repo_id=repo_id, config=_Attr(config),
            trained=trained, dataset_summary=_fmt(dataset_summary),
            style_levels=", ".join(str(i) for i in levels),
            threshold_source=training.get("threshold_source"),
            training_items=[(k, _fmt(v)) for k, v in training.items() if k != "hub_datasets"],
            metric_columns=columns, metric_rows=rows,
            init_seed=init.get("seed"),
            provenance_items=[(k, _fmt(v)) for k, v in provenance.items()],
        )
    except jinja2.TemplateError as exc:
        raise PublishError(f"{template}: cannot render the model card ({exc})") from None
    return text


class _Attr(dict):
    """Config dict readable as ``config.field`` in the template, with the library's defaults."""

    _DEFAULTS = {"preset": "full", "num_frames": 32, "face_margin": 0.2, "face_size": 256,
                 "style_diff": False, "threshold": 0.5, "uncertain_margin": 0.1, "min_face_ratio": 0.5}

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in self._DEFAULTS:
            return self._DEFAULTS[name]
        raise AttributeError(name)


def write_model_card(model_dir: str | Path, out_dir: str | Path, *, repo_id: str | None = None) -> Path:
    """Render ``README.md`` for the checkpoint in ``model_dir`` into ``out_dir``."""
    card = render_model_card(load_checkpoint_config(model_dir), repo_id=repo_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------
def checkpoint_files(model_dir: str | Path) -> list[Path]:
    """The files of a checkpoint that get uploaded (weights, config, small side files)."""
    model_dir = Path(model_dir)
    load_checkpoint_config(model_dir)
    if not (model_dir / WEIGHTS_NAME).is_file():
        raise PublishError(f"{model_dir}: no {WEIGHTS_NAME}; not a complete StyleFusion checkpoint")
    files = {model_dir / CONFIG_NAME, model_dir / WEIGHTS_NAME}
    for pattern in EXTRA_PATTERNS:
        files.update(p for p in model_dir.glob(pattern)
                     if p.is_file() and not p.name.startswith(".") and p.name != "README.md")
    return sorted(files)


def stage_checkpoint(model_dir: str | Path, staging_dir: str | Path, *,
                     repo_id: str | None = None) -> list[Path]:
    """Copy the checkpoint and its freshly rendered card into ``staging_dir``; returns the files.

    The card is rendered from config.json every time, so a stale README.md in the checkpoint
    folder (e.g. the short one ``save_pretrained`` writes) is never what users read on the Hub.
    """
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    staged = []
    for src in checkpoint_files(model_dir):
        dst = staging_dir / src.name
        shutil.copy2(src, dst)
        staged.append(dst)
    staged.append(write_model_card(model_dir, staging_dir, repo_id=repo_id))
    return sorted(staged)


def push_checkpoint(model_dir: str | Path, repo_id: str, *, dry_run: bool = False,
                    private: bool = False, revision: str | None = None,
                    commit_message: str | None = None, staging_dir: str | Path | None = None) -> list[str]:
    """Stage the checkpoint with its card and upload it to ``repo_id`` (a model repo).

    Returns the uploaded file names (with ``dry_run``, what would be uploaded; nothing is sent and
    no token is needed). Raises PublishError when there is no token or the Hub cannot be reached.
    """
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise PublishError(f"{repo_id!r} is not a valid Hugging Face repo id (expected ORG/NAME)") from None
    with tempfile.TemporaryDirectory(prefix="stylefusion-push-") as tmp:
        folder = Path(staging_dir) if staging_dir else Path(tmp)
        staged = stage_checkpoint(model_dir, folder, repo_id=repo_id)
        names = [p.name for p in staged]
        if dry_run:
            return names
        token = huggingface_hub.get_token()
        if token is None:
            raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN "
                               "(use --dry-run to see what would be uploaded)")
        try:
            huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
            huggingface_hub.upload_folder(
                repo_id=repo_id, folder_path=str(folder), token=token, revision=revision,
                commit_message=commit_message or f"Upload StyleFusion checkpoint ({len(names)} files)")
        except Exception as exc:  # noqa: BLE001 - network, auth, offline mode: one line for all
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise PublishError(f"cannot upload to https://huggingface.co/{repo_id}: "
                               f"{type(exc).__name__}: {first} (check the network, the token's "
                               "write access and the repo id)") from None
    return names


# ---------------------------------------------------------------------------------------------
# Space README
# ---------------------------------------------------------------------------------------------
def read_space_manifest(space_yaml: str | Path) -> dict[str, Any]:
    """Space.yaml as a dict, checked for the keys a Gradio Space cannot start without."""
    import yaml

    path = Path(space_yaml)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PublishError(f"{path}: cannot read it as YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path}: must be a YAML mapping of Space settings")
    missing = [k for k in SPACE_REQUIRED_KEYS if not data.get(k)]
    if missing:
        raise PublishError(f"{path}: missing required keys {missing}")
    short = str(data.get("short_description") or "")
    if len(short) > SHORT_DESCRIPTION_MAX:
        raise PublishError(f"{path}: short_description is {len(short)} characters; the Hub allows "
                           f"{SHORT_DESCRIPTION_MAX}")
    return data


def space_header(manifest: dict[str, Any]) -> dict[str, Any]:
    """The README YAML header Spaces read, from our manifest.

    ``model`` becomes ``models`` (links the Space to the model page); ``preload_from_hub`` is
    dropped while ``model_placeholder`` is true, because a Space whose preload repo does not exist
    fails to build, while one without it starts and explains that the model is missing.
    """
    header = {k: v for k, v in manifest.items() if k not in SPACE_OWN_KEYS}
    for key in ("sdk_version", "python_version"):  # "3.10" must not become the float 3.1
        if key in header:
            header[key] = str(header[key])
    model = manifest.get("model")
    if model:
        models = list(header.get("models") or [])
        header["models"] = models + [model] if model not in models else models
    if manifest.get("model_placeholder"):
        header.pop("preload_from_hub", None)
    return header


def render_space_readme(space_yaml: str | Path) -> str:
    """The Space's README.md: the generated YAML header and a short body."""
    import yaml

    manifest = read_space_manifest(space_yaml)
    header = space_header(manifest)
    model = manifest.get("model")
    body = [f"# {manifest['title']}", ""]
    if manifest.get("short_description"):
        body += [str(manifest["short_description"]) + ".", ""]
    body += [
        "Upload a video with a face: StyleFusion samples 32 frames, crops the face and combines "
        "how the video moves (a 3D ResNet-50) with how the face's StyleGAN style changes over time "
        "(a pSp encoder and a StyleGRU). You get a verdict (fake / real / uncertain / no face) with "
        "its probability and threshold, the face crops it analysed, per-frame plots and a JSON "
        "report. A verdict is a reason to look closer, not proof.",
        "",
    ]
    if model:
        body += [f"Model: [{model}](https://huggingface.co/{model})"
                 + (" (placeholder: no weights published yet; the app says so and how to point it at "
                    "a checkpoint)" if manifest.get("model_placeholder") else ""), ""]
    body += [
        "Run it locally:",
        "",
        "```bash",
        "pip install stylefusion gradio plotly",
        f"python {manifest['app_file']} --model {model or 'DIR_OR_REPO_ID'}",
        "```",
        "",
        "<!-- Generated by hub/publish.py space-readme from Space.yaml: edit Space.yaml, not this file. -->",
        "",
    ]
    head = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    return f"---\n{head}---\n\n" + "\n".join(body)


def write_space_readme(space_yaml: str | Path, out: str | Path) -> Path:
    """Write the Space README; ``out`` may be a file or an existing folder (gets README.md)."""
    out = Path(out)
    if out.is_dir():
        out = out / "README.md"
    text = render_space_readme(space_yaml)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="publish.py", description="Publish StyleFusion to the Hugging Face Hub.")
    sub = parser.add_subparsers(dest="command", required=True)
    card = sub.add_parser("card", help="render a checkpoint's model card (README.md)")
    card.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors)")
    card.add_argument("--out", required=True, help="folder to write README.md into")
    card.add_argument("--repo-id", help="hub repo id to name in the card's usage examples")
    push = sub.add_parser("push", help="upload a checkpoint with its rendered card")
    push.add_argument("--model", required=True, help="checkpoint folder")
    push.add_argument("--repo-id", required=True, help="model repo on the Hub, ORG/NAME")
    push.add_argument("--dry-run", action="store_true", help="list what would be uploaded; send nothing")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to upload to (default: main)")
    push.add_argument("--staging", help="keep the staged folder here (default: a temporary folder)")
    space = sub.add_parser("space-readme", help="generate the Space README (YAML header) from Space.yaml")
    space.add_argument("--space", default="Space.yaml", help="the Space manifest (default: Space.yaml)")
    space.add_argument("--out", default="README_SPACE.md", help="file or folder to write (default: README_SPACE.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry; returns the exit code (1 with a one-line message on any PublishError)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "card":
            path = write_model_card(args.model, args.out, repo_id=args.repo_id)
            sys.stdout.write(f"wrote {path}\n")
        elif args.command == "push":
            names = push_checkpoint(args.model, args.repo_id, dry_run=args.dry_run, private=args.private,
                                    revision=args.revision, staging_dir=args.staging)
            verb = "would upload" if args.dry_run else "uploaded"
            sys.stdout.write(f"{verb} {len(names)} files to https://huggingface.co/{args.repo_id}:\n")
            for name in names:
                sys.stdout.write(f"  {name}\n")
        else:
            path = write_space_readme(args.space, args.out)
            sys.stdout.write(f"wrote {path}\n")
    except PublishError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
