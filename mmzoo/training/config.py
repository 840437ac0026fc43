"""The trainer's settings: a pydantic ``TrainConfig`` whose defaults come from the model's recipe.

A recipe (``registry.model.get(name).training``) carries its paper's schedule (each family's plugin holds it;
docs/training.md lists them). A config file's ``training`` section and ``--set training.<field>=`` override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from mmzoo.config import did_you_mean
from mmzoo.contracts import CheckedModel
from mmzoo.devices import ALIASES
from mmzoo.errors import ConfigError


class TrainConfig(CheckedModel):
    """How to train a matching model: schedule, negatives, hardware and reproducibility.

    Examples:
        >>> from mmzoo import registry
        >>> cfg = TrainConfig.for_recipe(registry.model.get("vsepp").training, {"epochs": 2})
        >>> cfg.lr, cfg.batch_size, cfg.epochs
        (0.0002, 128, 2)
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    epochs: int = Field(30, ge=1, description="Passes over the training captions.")
    batch_size: int = Field(
        128, ge=2, description="Image-caption pairs per step and per process (the in-batch negatives)."
    )
    optimizer: Literal["adam", "adamw"] = Field("adam", description="Adam (L2 weight decay) or AdamW (decoupled).")
    lr: float = Field(2e-4, gt=0.0, description="Learning rate at the start.")
    weight_decay: float = Field(0.0, ge=0.0, description="Weight decay (decoupled for AdamW, L2 for Adam).")
    lr_groups: dict[str, float] = Field(
        default_factory=dict,
        description="Parameter-name prefix -> learning-rate multiplier, e.g. {'text.bert': 0.1}; the longest "
        "matching prefix wins, every other parameter gets 1.",
    )
    lr_decay_every: int = Field(15, ge=1, description="Multiply the learning rate by lr_decay every this many epochs.")
    lr_decay: float = Field(0.1, gt=0.0, le=1.0, description="Step-decay factor of the learning rate.")
    grad_clip: float = Field(
        2.0, ge=0.0, description="Clip the gradient's global L2 norm to this value; 0 turns it off."
    )
    warmup_epochs: int = Field(
        0, ge=0, description="First epochs that sum the hinge over all negatives before switching to hardest negatives."
    )
    hard_negatives: Literal["all"] | int = Field(
        "all",
        description=(
            "'all' scores every in-batch pair with the fusion block (the paper); an integer h scores only each "
            "positive and the top-h negatives per anchor ranked by the cheap <i0,c0> score (docs/training.md)."
        ),
    )
    global_negatives: bool = Field(
        True,
        description="Distributed runs: mine negatives among the batches of all processes (False: within each process).",
    )
    seed: int = Field(0, description="Seeds model initialisation, shuffling, dropout and data-loader workers.")
    num_workers: int = Field(0, ge=0, description="Data-loader worker processes (0 reads in the training process).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' picks CUDA when a GPU is present.")
    amp: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision (mmzoo.devices.PRECISIONS; the old 'off' is 'fp32'): 'auto' is bf16 on GPUs "
        "that support it, fp16 with a gradient scaler on older GPUs, fp32 on the CPU.",
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches of batch_size accumulated per optimizer step.")
    eval_batch_size: int = Field(128, ge=1, description="Images or captions encoded at once during evaluation.")
    dev_eval: Literal["auto", "full", "rerank", "subset"] = Field(
        "auto",
        description="How the dev split is scored after each epoch: 'full' (every pair), 'rerank' (shortlist "
        "dev_rerank candidates per query by <i0,c0>, fuse-score those), 'subset' (every pair of the first "
        "dev_subset images); the last epoch is also evaluated in full. 'auto' is 'full' for a model without "
        "fusion or a dev split within the device's pair budget, else 'subset' with as many images as fit it "
        "(docs/performance.md, section 6, measures the choice); run.json records what it resolved to.",
    )
    dev_rerank: int = Field(50, ge=1, description="Candidates per query of dev_eval='rerank'.")
    dev_subset: int = Field(1000, ge=1, description="Dev images (the first N) of dev_eval='subset'.")

    @field_validator("hard_negatives", mode="before")
    @classmethod
    def _check_hard_negatives(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError("must be 'all' or a positive integer h (negatives per anchor)")
        return value

    @field_validator("amp", mode="before")
    @classmethod
    def _old_precision_names(cls, value: Any) -> Any:
        return ALIASES.get(value, value) if isinstance(value, str) else value  # amp='off' (before 0.3) is fp32

    @field_validator("lr_groups")
    @classmethod
    def _check_groups(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0.0 <= v <= 1e3}
        if bad:
            raise ValueError(f"multipliers must lie in [0, 1000]; got {bad}")
        return value

    @classmethod
    def for_recipe(cls, recipe_training: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """The recipe's training defaults with ``overrides`` on top, validated (:class:`ConfigError` if not)."""
        data = {**dict(recipe_training), **dict(overrides or {})}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "<root>"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    hint = did_you_mean(err["loc"][-1], cls.model_fields)
                    msg = f"unknown training field.{hint} Known: {', '.join(cls.model_fields)}"
                lines.append(f"  training.{loc}: {msg}")
            raise ConfigError("Invalid training config:\n" + "\n".join(lines)) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


__all__ = ["TrainConfig"]
