"""Model cards (``README.md``) written with huggingface_hub's ``ModelCard`` / ``ModelCardData``.

A card's metadata carries ``library_name: mmzoo``, tags, datasets, the licence and, in model-index form,
the evaluation results *measured for these weights* (read from the training run's own ``metrics.jsonl``).
Nothing else goes into model-index. Published numbers appear only in the text, labelled as their authors';
a measured number always names the run file, the epoch, the dev protocol and the data that produced it. A card
never invents a number.

What a card says about the method (paper, citation, authors' code), the inputs and the published results
comes from the zoo entry and the saved config (``converted_from`` for converted checkpoints), never from
this module: the core names no model.

Examples:
    >>> card = model_card(read_document("runs/x/best"), measured=read_run_metrics("runs/x"))  # doctest: +SKIP
    >>> card.data.library_name  # doctest: +SKIP
    'mmzoo'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmzoo._atomic import atomic_write_text
from mmzoo.checkpoint.rundir import METRICS_NAME, read_metrics, read_run_document
from mmzoo.config import ModelConfig, apply_overrides
from mmzoo.errors import DataError
from mmzoo.hub import zoo
from mmzoo.registry import NATIVE_FORMATS, PretrainedEntry, get_registry
from mmzoo.registry import model as recipes

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

logger = logging.getLogger(__name__)

#: the flat metric keys of ``mmzoo eval --json`` and their names in a card.
METRIC_NAMES = {
    "i2t_r1": ("recall@1", "Image-to-text R@1"),
    "i2t_r5": ("recall@5", "Image-to-text R@5"),
    "i2t_r10": ("recall@10", "Image-to-text R@10"),
    "t2i_r1": ("recall@1", "Text-to-image R@1"),
    "t2i_r5": ("recall@5", "Text-to-image R@5"),
    "t2i_r10": ("recall@10", "Text-to-image R@10"),
    "rsum": ("rsum", "rsum (sum of the six recalls)"),
}
RESULT_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
TASK = "image-text-retrieval"
BASE_TAGS = ["mmzoo", "image-text-matching", "cross-modal-retrieval", "safetensors"]


# -- a training run's own numbers ---------------------------------------------------------------------------
def read_run_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The best epoch's dev metrics of a training run (``RUNDIR/metrics.jsonl``), with how they were measured.

    Each line of ``metrics.jsonl`` is one epoch, as ``mmzoo train`` writes it: ``{"epoch": 3, "dev": {"rsum": ...},
    "dev_eval": "subset", "dev_full": {...}}``, or the metrics flat on the line. The best epoch is the one with the
    highest per-epoch ``rsum`` (the first of equals), the one the trainer saved as ``best/``.

    The per-epoch numbers of a run with a cheaper dev evaluation (``training.dev_eval``: the first N dev images,
    or a shortlist reranked) are not the dev split's results. The full evaluation of that epoch (``dev_full``,
    recorded for the last epoch) is used when there is one; otherwise the numbers are labelled with their
    protocol (``dev (first 500 images)``), which ``run.json``'s ``dev_eval`` details. Returns None when the run
    has no metrics file.
    """
    run_dir = Path(run_dir)
    path = run_dir / METRICS_NAME
    if not path.is_file():
        return None
    epochs = []
    for record in read_metrics(run_dir):
        values = record.get("dev", record)
        if not isinstance(values, dict):
            raise DataError(f"{path}: epoch {record.get('epoch')} holds no JSON object of dev metrics.")
        found = _metric_values(values)
        if found:
            epochs.append((record, found))
    if not epochs:
        raise DataError(f"{path} holds no dev metrics (keys {', '.join(METRIC_NAMES)}).")
    record, metrics = max(epochs, key=lambda e: _rank(e[1].get("rsum")))
    run = read_run_info(run_dir)
    protocol = run.get("dev_eval") if isinstance(run.get("dev_eval"), dict) else {}
    mode = str(record.get("dev_eval") or protocol.get("mode") or "full")
    full = _metric_values(record["dev_full"]) if isinstance(record.get("dev_full"), dict) else {}
    if mode != "full" and full:
        metrics, mode = full, "full"
    split, where = _protocol(mode, protocol)
    return {
        "epoch": record.get("epoch"),
        "metrics": metrics,
        "split": split,
        "dev_eval": mode,
        "source": f"{path.name} of the training run (epoch {record.get('epoch')}, {where})",
        "data": run.get("data"),
    }


def _metric_values(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(values[k]) for k in METRIC_NAMES if isinstance(values.get(k), int | float)}


def _rank(rsum: float | None) -> float:
    """An epoch's rank by rsum; a NaN or missing rsum never wins (the trainer saves no best for it)."""
    return float("-inf") if rsum is None or rsum != rsum else rsum


def _protocol(mode: str, protocol: Mapping[str, Any]) -> tuple[str, str]:
    """(the split as model-index names it, the words of the card's source line) of a dev evaluation mode."""
    if mode == "full":
        return "dev", "full dev split"
    if mode == "subset":
        n = protocol.get("subset_images")
        return (f"dev (first {n} images)", f"first {n} dev images") if n else ("dev (a subset)", "a dev subset")
    if mode == "rerank":
        k = protocol.get("rerank")
        shortlist = f"top {k}" if k else "a shortlist"
        return f"dev ({shortlist} reranked)", f"dev split, {shortlist} of each query reranked"
    return f"dev ({mode})", f"dev split, dev_eval {mode!r}"


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """``RUNDIR/run.json`` as a dict (empty when absent)."""
    return read_run_document(run_dir)


# -- the card ----------------------------------------------------------------------------------------------
def model_card(
    document: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    entry: PretrainedEntry | None = None,
    measured: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of a saved model or ensemble.

    Args:
        document: the saved ``config.json``.
        repo_id: the Hub repository the card describes (used in the loading snippet).
        entry: the zoo entry these weights belong to: dataset, licence, paper, citation, inputs, published numbers.
        measured: :func:`read_run_metrics` output; only these numbers enter model-index.
    """
    from huggingface_hub import ModelCard, ModelCardData

    name = repo_id.split("/")[-1] if repo_id else (entry.alias if entry else "mmzoo-model")
    source = document.get("converted_from") or {}
    data = ModelCardData(
        library_name="mmzoo",
        license=(entry.license if entry else source.get("license")) or None,
        tags=BASE_TAGS + [t for t in _component_names(document) if t not in BASE_TAGS],
        datasets=[entry.dataset_id] if entry and entry.dataset_id else None,
        model_name=name if measured else None,
        eval_results=_eval_results(entry, measured),
        pipeline_tag=None,
    )
    sections = [
        _intro(document, name, entry),
        _use(document, repo_id, entry),
        _architecture(document),
        _results(entry, measured),
        _health(document),
        _citation(entry, source),
        _safety(entry),
    ]
    body = "\n".join(s for s in sections if s)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _component_names(document: Mapping[str, Any]) -> list[str]:
    configs = [document["model"]] if "model" in document else []
    configs += [m for m in document.get("ensemble", {}).get("configs", [])]
    return [c[s]["name"] for c in configs for s in ("visual", "text", "fusion", "loss") if c.get(s)]


def _eval_results(entry: PretrainedEntry | None, measured: Mapping[str, Any] | None) -> list[Any] | None:
    if not measured:
        return None
    from huggingface_hub import EvalResult

    dataset_name = (entry.dataset if entry else None) or measured.get("data")
    return [
        EvalResult(
            task_type=TASK,
            task_name="Image-text retrieval",
            dataset_type=(entry.dataset_id if entry else None) or "custom",
            dataset_name=str(dataset_name or "the training run's dev split"),
            dataset_split=measured.get("split", "dev"),
            metric_type=METRIC_NAMES[key][0],
            metric_name=METRIC_NAMES[key][1],
            metric_value=round(value, 2),
        )
        for key, value in measured["metrics"].items()
    ]


def _intro(document: Mapping[str, Any], name: str, entry: PretrainedEntry | None) -> str:
    lines = [f"# {name}", ""]
    source = document.get("converted_from") or {}
    if entry:
        lines += [f"Image-text matching with the `{entry.recipe}` recipe of mmzoo on {entry.dataset}.", ""]
    elif "ensemble" in document:
        lines += ["An ensemble of image-text matching models saved by mmzoo: its score averages the members'.", ""]
    else:
        lines += ["An image-text matching model saved by mmzoo.", ""]
    paper = (entry.paper if entry else "") or source.get("paper")
    if paper:
        lines += [f"Paper: {paper}.", ""]
    code = (entry.code if entry else "") or source.get("code")
    if source:
        lines += [
            f"Converted by `mmzoo convert {source.get('converter')}` from the authors' checkpoint "
            f"`{source.get('file')}` (sha256 `{source.get('sha256')}`)"
            + (f", written by their code at {code}." if code else "."),
            "",
        ]
    elif code:
        lines += [f"Authors' code: {code}.", ""]
    if entry and entry.status not in (zoo.PUBLISHED, zoo.CONVERTED):
        lines += [f"**Status: {entry.status}.** {zoo.how_to_get(entry)}", ""]
    if entry and entry.notes:
        lines += [entry.notes, ""]
    return "\n".join(lines)


def _inputs(document: Mapping[str, Any], entry: PretrainedEntry | None) -> str:
    if entry and entry.inputs:
        return entry.inputs
    config = document.get("model") or (document.get("ensemble", {}).get("configs") or [{}])[0]
    visual = config.get("visual") or {}
    if visual.get("name") in get_registry("visual_encoder"):
        cls = get_registry("visual_encoder").get(visual["name"])
        params = {k: v for k, v in visual.items() if k != "name"}
        try:
            return cls.describe_inputs(cls.Config.model_validate(params))
        except ValueError:
            pass
    return "region features as the config describes"


def _use(document: Mapping[str, Any], repo_id: str | None, entry: PretrainedEntry | None) -> str:
    load_name = f"hf-hub:{repo_id}" if repo_id else (entry.alias if entry else "local-dir:PATH/TO/THIS/FOLDER")
    lines = ["## Use", "", "```python", "import mmzoo", ""]
    if entry and entry.status == zoo.NOT_TRAINED:
        load_name = entry.alias
        lines.append("# works once weights exist; until then load your own run with 'local-dir:'")
    lines.append(f'model = mmzoo.from_pretrained("{load_name}")')
    lines.append(f"images = model.encode_images(inputs)  # {_inputs(document, entry)}")
    lines += ['texts = model.encode_texts(["a man riding a horse"])', "scores = model.similarity(images, texts)"]
    lines += ["```", ""]
    return "\n".join(lines)


def _architecture(document: Mapping[str, Any]) -> str:
    if "ensemble" in document:
        members = document["ensemble"].get("members", [])
        return "\n".join(["## Architecture", "", f"Members (scores averaged): {', '.join(members)}.", ""])
    model = document["model"]
    lines = ["## Architecture", "", "| section | component | settings |", "|---|---|---|"]
    for section in ("visual", "text", "fusion", "loss"):
        spec = model.get(section)
        if not spec:
            lines.append(f"| {section} | none | |")
            continue
        settings = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        lines.append(f"| {section} | `{spec['name']}` | {settings} |")
    dual = model.get("dual_weight", 1.0)
    lines += [
        "",
        f"Score `S = dual_weight * <i0, c0> + alpha * fused` with dual_weight = {dual}, alpha = {model.get('alpha')}; "
        f"embedding size {model.get('embed_dim')}.",
        "",
    ]
    requires = [r for r in document.get("requires", []) if r.get("distribution")]
    if requires:
        needs = ", ".join(
            f"`{r['distribution']}>={r['version']}`" if r.get("version") else f"`{r['distribution']}`" for r in requires
        )
        lines += [f"Needs these plugin distributions: {needs}.", ""]
    return "\n".join(lines)


def _health(document: Mapping[str, Any]) -> str:
    """A warning when the trainer saved these weights from an epoch that looked collapsed."""
    health = document.get("training_health")
    if not isinstance(health, dict) or not health.get("collapsed"):
        return ""
    signs = "; ".join(str(s) for s in health["collapsed"])
    return (
        f"> **Warning:** the training epoch these weights come from (epoch {health.get('epoch')}) looked collapsed: "
        f"{signs}. Its rankings are probably near chance.\n"
    )


def _results(entry: PretrainedEntry | None, measured: Mapping[str, Any] | None) -> str:
    lines = ["## Results", ""]
    if measured:
        data = f" Data: `{measured['data']}`." if measured.get("data") else ""
        lines += [f"Measured by mmzoo: {measured['source']}.{data}"]
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {METRIC_NAMES[k][1]} | {v:.2f} |" for k, v in measured["metrics"].items()]
        lines.append("")
    elif entry and entry.metrics:
        lines += [f"Measured by mmzoo: {entry.metrics_source}.", "", "| metric | value |", "|---|---|"]
        lines += [f"| {METRIC_NAMES.get(k, (k, k))[1]} | {v:.2f} |" for k, v in entry.metrics.items()]
        lines.append("")
    else:
        lines += ["No numbers have been measured by mmzoo for these weights yet.", ""]
    if entry and entry.published_results:
        where = f" ({entry.results_source})" if entry.results_source else ""
        lines += [
            f"Published numbers, as their source reports them{where}; not measured by mmzoo, shown for reference:",
            "",
            "| split | i2t R@1 | i2t R@5 | i2t R@10 | t2i R@1 | t2i R@5 | t2i R@10 | rsum |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for split, values in entry.published_results.items():
            lines.append(f"| {split} | " + " | ".join(str(values.get(k, "")) for k in RESULT_KEYS) + " |")
        lines.append("")
    return "\n".join(lines)


def _citation(entry: PretrainedEntry | None, source: Mapping[str, Any]) -> str:
    citation = (entry.citation if entry else "") or source.get("citation")
    if not citation:
        return ""
    return "\n".join(["## Citation", "", "```bibtex", citation.strip(), "```", ""])


def _safety(entry: PretrainedEntry | None = None) -> str:
    if entry is not None and entry.weights.format in NATIVE_FORMATS:
        return "\n".join(
            [
                "## Files and safety",
                "",
                f"The authors' own folder in the {entry.weights.format} layout (`config.json`, `model.safetensors`, "
                "the processor and tokenizer files), loaded natively: no conversion. mmzoo downloads those files only "
                "(never pickled weights), verifies each against the Hub's record, refuses a folder that carries code "
                "(a `.py` file or an `auto_map`), and loads every tensor strictly; `save_pretrained` then writes an "
                "ordinary mmzoo folder.",
                "",
            ]
        )
    return "\n".join(
        [
            "## Files and safety",
            "",
            "`config.json` (the full model config, the mmzoo version, the plugins it needs), `model.safetensors` "
            "(every weight, frozen pretrained parts such as BERT included: no second download, no pickle) and the "
            "tokenizer / vocabulary files of each component. `mmzoo.from_pretrained` verifies the weights' sha256 "
            "against the Hub's record, loads strictly (a missing, unexpected or mis-shaped tensor is an error) and "
            "never runs code from the folder.",
            "",
        ]
    )


# -- the zoo's own cards --------------------------------------------------------------------------------------
def zoo_card(entry: PretrainedEntry) -> ModelCard:
    """The card of a zoo entry (``model_cards/<alias>.md``), built from its recipe's config."""
    if entry.members:
        configs = [ModelConfig.parse(recipes.get(zoo.get_pretrained(m).recipe).config).to_dict() for m in entry.members]
        document: dict[str, Any] = {"ensemble": {"members": list(entry.members), "configs": configs}}
    else:
        config = recipes.get(entry.recipe).config
        if entry.weights.format in NATIVE_FORMATS:  # the entry's options complete the recipe (its embed_dim, source)
            config = apply_overrides(config, entry.weights.options)
        document = {"model": ModelConfig.parse(config).to_dict()}
    repo = entry.weights.repo if entry.weights.format == "mmzoo" else None
    return model_card(document, repo_id=repo, entry=entry)


def write_zoo_cards(folder: str | Path = "model_cards") -> list[Path]:
    """Write ``<alias>.md`` for every zoo entry (``python -m mmzoo.hub``); tests check the files are current."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in zoo.pretrained_entries():
        path = folder / f"{entry.alias}.md"
        atomic_write_text(path, str(zoo_card(entry)))
        written.append(path)
    return written


__all__ = ["METRIC_NAMES", "model_card", "read_run_info", "read_run_metrics", "write_zoo_cards", "zoo_card"]
