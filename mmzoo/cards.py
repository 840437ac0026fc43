"""Model cards (``README.md``) written with huggingface_hub's ``ModelCard`` / ``ModelCardData``.

A card's metadata carries ``library_name: mmzoo``, tags, datasets, the licence and, in model-index form,
the evaluation results *measured for these weights* (read from the training run's own ``metrics.jsonl``).
Nothing else goes into model-index. The paper's numbers appear only in the text, labelled as the paper's;
a measured number always names the command and data that produced it. A card never invents a number.

Example:
    >>> card = model_card(read_config("runs/x/best"), metrics=read_run_metrics("runs/x"))  # doctest: +SKIP
    >>> card.data.library_name
    'mmzoo'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmzoo.errors import DataError

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from mmzoo.zoo import PretrainedEntry

logger = logging.getLogger("mmzoo.cards")

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
TASK = "image-text-retrieval"
BASE_TAGS = ["mmzoo", "image-text-matching", "cross-modal-retrieval", "safetensors"]


def read_run_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The best epoch's dev metrics of a training run (``RUNDIR/metrics.jsonl``), with where they came from.

    Each line of ``metrics.jsonl`` is one epoch: ``{"epoch": 3, "dev": {"rsum": ...}}`` or the metrics flat on
    the line. The best epoch is ``run.json``'s ``best_epoch`` when it names one, else the highest ``rsum``.
    Returns None when the run has no metrics file.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    epochs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path} line {number} is not JSON: {exc}") from None
        values = record.get("dev", record) if isinstance(record, dict) else None
        if not isinstance(values, dict):
            raise DataError(f"{path} line {number} is not a JSON object of metrics.")
        found = {k: float(values[k]) for k in METRIC_NAMES if isinstance(values.get(k), int | float)}
        if found:
            epochs.append((record.get("epoch"), found))
    if not epochs:
        raise DataError(f"{path} holds no dev metrics (keys {', '.join(METRIC_NAMES)}).")
    run = read_run_info(run_dir)
    best = next((e for e in epochs if run.get("best_epoch") is not None and e[0] == run["best_epoch"]), None)
    if best is None:
        best = max(epochs, key=lambda e: e[1].get("rsum", float("-inf")))
    return {
        "epoch": best[0],
        "metrics": best[1],
        "split": "dev",
        "source": f"{path.name} of the training run (epoch {best[0]}, dev split)",
        "command": run.get("command"),
        "data": run.get("data") or run.get("data_dir"),
        "dataset": run.get("dataset"),
    }


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """``RUNDIR/run.json`` as a dict (empty when absent)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise DataError(f"{path} must hold a JSON object.")
    return info


def model_card(
    document: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    entry: PretrainedEntry | None = None,
    measured: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of a saved model.

    Args:
        document: the saved ``config.json`` (see :func:`mmzoo.serialization.config_document`).
        repo_id: the Hub repository the card describes (used in the loading snippet).
        entry: the zoo entry these weights belong to, for its dataset, licence and the paper's numbers.
        measured: :func:`read_run_metrics` output; only these numbers enter model-index.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model = document["model"]
    name = repo_id.split("/")[-1] if repo_id else (entry.alias if entry else "mmzoo-model")
    dataset_id = entry.dataset_id if entry else None
    measured_data = (measured or {}).get("dataset") or (measured or {}).get("data")
    dataset_name = entry.dataset if entry else measured_data or "the training run's dev split"
    eval_results = None
    if measured:
        eval_results = [
            EvalResult(
                task_type=TASK,
                task_name="Image-text retrieval",
                dataset_type=dataset_id or "custom",
                dataset_name=str(dataset_name),
                dataset_split=measured.get("split", "dev"),
                metric_type=METRIC_NAMES[key][0],
                metric_name=METRIC_NAMES[key][1],
                metric_value=round(value, 2),
            )
            for key, value in measured["metrics"].items()
        ]
    components = [model[s]["name"] for s in ("visual", "text", "fusion", "loss") if model.get(s)]
    data = ModelCardData(
        library_name="mmzoo",
        license=entry.license if entry else None,
        tags=BASE_TAGS + [t for t in components if t not in BASE_TAGS],
        datasets=[dataset_id] if dataset_id else None,
        model_name=name if eval_results else None,
        eval_results=eval_results,
        pipeline_tag=None,
    )
    body = _body(document, name=name, repo_id=repo_id, entry=entry, measured=measured)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _body(
    document: Mapping[str, Any],
    *,
    name: str,
    repo_id: str | None,
    entry: PretrainedEntry | None,
    measured: Mapping[str, Any] | None,
) -> str:
    model = document["model"]
    load_name = f"hf-hub:{repo_id}" if repo_id else (entry.alias if entry else "local-dir:PATH/TO/THIS/FOLDER")
    lines = [f"# {name}", ""]
    if entry:
        lines += [f"Image-text matching with the `{entry.recipe}` recipe of mmzoo on {entry.dataset}.", ""]
        lines += [f"Paper: {entry.paper}.", ""]
    else:
        lines += ["An image-text matching model saved by mmzoo.", ""]
    if entry and not entry.available:
        lines += [
            f"**Status: not trained.** No weights are published at `{entry.hub_repo}` yet (training needs a GPU and "
            "the precomputed features). " + entry.how_to_train(),
            "",
        ]
        load_name = entry.alias
    lines += ["## Use", "", "```python", "import mmzoo", ""]
    if entry and not entry.available:
        lines.append("# works once the weights are published; until then load your own run with 'local-dir:'")
    lines.append(f'model = mmzoo.from_pretrained("{load_name}")')
    lines += ["images = model.encode_images(region_features)  # (N, 36, 2048) float32 bottom-up features"]
    lines += ['texts = model.encode_texts(["a man riding a horse"])', "scores = model.similarity(images, texts)"]
    lines += ["```", "", "## Architecture", "", "| section | component | settings |", "|---|---|---|"]
    for section in ("visual", "text", "fusion", "loss"):
        spec = model.get(section)
        if not spec:
            lines.append(f"| {section} | none | |")
            continue
        settings = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        lines.append(f"| {section} | `{spec['name']}` | {settings} |")
    lines += ["", f"Score `S = <i0, c0> + alpha * fused` with alpha = {model.get('alpha')}; embedding size "]
    lines[-1] += f"{model.get('embed_dim')}."
    lines.append("")
    requires = [r for r in document.get("requires", []) if r.get("distribution")]
    if requires:
        needs = ", ".join(
            f"`{r['distribution']}>={r['version']}`" if r.get("version") else f"`{r['distribution']}`" for r in requires
        )
        lines += [f"Needs these plugin distributions: {needs}.", ""]
    lines += ["## Results", ""]
    if measured:
        command = f" Command: `{measured['command']}`." if measured.get("command") else ""
        data = f" Data: `{measured['data']}`." if measured.get("data") else ""
        lines += [
            f"Measured by mmzoo on the {measured.get('split', 'dev')} split: {measured['source']}.{command}{data}"
        ]
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {METRIC_NAMES[k][1]} | {v:.2f} |" for k, v in measured["metrics"].items()]
        lines.append("")
    else:
        lines += ["No numbers have been measured for these weights yet.", ""]
    if entry and entry.paper_results:
        lines += [
            "Reported **in the paper** (Wei et al., CVPR 2020; not measured by mmzoo, shown for reference):",
            "",
            "| split | i2t R@1 | i2t R@5 | i2t R@10 | t2i R@1 | t2i R@5 | t2i R@10 | rsum |",
            "|---|---|---|---|---|---|---|---|",
        ]
        keys = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
        for split, values in entry.paper_results.items():
            lines.append(f"| {split} | " + " | ".join(str(values[k]) for k in keys) + " |")
        lines.append("")
    lines += [
        "## Files and safety",
        "",
        "`config.json` (the full model config, the mmzoo version, the plugins it needs), `model.safetensors` "
        "(every weight, frozen pretrained parts such as BERT included: no second download, no pickle) and the tokenizer / vocabulary "
        "files of each component. `mmzoo.from_pretrained` verifies the weights' sha256 against the Hub's record "
        "and loads strictly (a missing, unexpected or mis-shaped tensor is an error).",
        "",
    ]
    return "\n".join(lines)


def zoo_card(entry: PretrainedEntry) -> ModelCard:
    """The card of a zoo entry (``model_cards/<alias>.md``), built from its recipe's config."""
    from mmzoo import registry
    from mmzoo.config import ModelConfig

    config = ModelConfig.parse(registry.model.get(entry.recipe).config).to_dict()
    return model_card({"model": config}, repo_id=entry.hub_repo, entry=entry)


def write_zoo_cards(folder: str | Path = "model_cards") -> list[Path]:
    """Write ``<alias>.md`` for every zoo entry (``python -m mmzoo.cards``); tests check the files are current."""
    from mmzoo.zoo import pretrained_entries

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in pretrained_entries():
        path = folder / f"{entry.alias}.md"
        path.write_text(str(zoo_card(entry)), encoding="utf-8")
        written.append(path)
    return written


__all__ = ["METRIC_NAMES", "model_card", "read_run_info", "read_run_metrics", "write_zoo_cards", "zoo_card"]

if __name__ == "__main__":
    for written in write_zoo_cards():
        print(written)
