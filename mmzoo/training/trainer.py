"""The training loop: Adam with step decay, clipping, warm-up negatives, dev evaluation, checkpoints.

A run folder holds::

    run.json           the resolved model and training configs, the data path, the mmzoo version
    metrics.jsonl      one JSON line per epoch: epoch, loss, lr, dev metrics, pairs_per_s, seconds
    best/              the model with the best dev rsum so far (a save_pretrained folder)
    last/              the last epoch's model plus training_state.pt (optimizer, scheduler, scaler,
                       epoch, step, RNG states): what ``--resume`` continues from

Every file and folder is replaced atomically (:mod:`mmzoo._atomic`). Epoch e's shuffle order
depends only on (seed, e) and every RNG is restored on resume, so on the CPU a resumed run produces
the same weights bit for bit as an uninterrupted one. A non-finite loss stops training at once, and each
epoch is checked for collapse (:mod:`mmzoo.training.health`).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mmzoo._atomic import atomic_write_json, is_storage_error, recover_folder, storage_error, writable_dir
from mmzoo.data import collate_pairs, open_split
from mmzoo.data.guard import feature_facts
from mmzoo.errors import CheckpointError, ConfigError, MMZooWarning, TrainingError
from mmzoo.evaluation import encode_captions, encode_images
from mmzoo.factory import create_model
from mmzoo.model import MatchingModel, load_folder
from mmzoo.training import health
from mmzoo.training.config import TrainConfig
from mmzoo.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    init_distributed,
    shutdown_distributed,
    true_everywhere,
)
from mmzoo.training.precision import autocast, make_scaler, resolve_amp, resolve_device
from mmzoo.training.rundir import (
    METRICS_NAME,
    RUN_NAME,
    changed_files,
    check_resume,
    check_run_folder,
    clean_start,
    data_fingerprint,
    lock_run,
    read_metrics,
    read_run,
    reconcile_metrics,
    write_metrics,
)
from mmzoo.training.runspec import RunSpec
from mmzoo.training.sharded_eval import evaluate_split
from mmzoo.training.state import TrainingState, capture_rng, load_training_state, restore_rng, save_checkpoint
from mmzoo.training.step import TrainingStep

logger = logging.getLogger(__name__)
#: dev items encoded after each epoch to measure the embeddings' spread (collapse check).
PROBE_ITEMS = 256


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a data-loader worker from its torch seed (itself derived from seed and epoch)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class EpochResult:
    loss: float
    pairs: int
    seconds: float


class Trainer:
    """Trains one run. Use :func:`train`; the class exists so tests can drive single epochs.

    Examples:
        >>> spec = prepare_run("data/shapes", "vsepp", epochs=2)  # doctest: +SKIP
        >>> Trainer(spec, "runs/vsepp").fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: RunSpec,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> None:
        #: called with each epoch's metrics record once it is written (main process): TensorBoard, a notebook.
        self.callbacks = list(callbacks)
        # one trainer per run folder, for the Trainer's lifetime: RUN/.lock (the main process of a distributed run)
        main_rank = int(os.environ.get("RANK", "0")) == 0
        self._lock = lock_run(writable_dir(Path(run_dir), "run folder")) if main_rank else None
        try:
            self._init(spec, run_dir, resume=resume, progress=progress)
        except BaseException:
            self.release_lock()
            raise
        if self._lock is not None:
            weakref.finalize(self, self._lock.release)

    def release_lock(self) -> None:
        """Let another trainer into the run folder (done when :meth:`fit` returns, and when the process ends)."""
        if self._lock is not None:
            self._lock.release()

    def _init(self, spec: RunSpec, run_dir: str | Path, *, resume: bool, progress: bool) -> None:
        self.spec = spec
        self.cfg: TrainConfig = spec.training
        self.progress = progress
        last = self._open_run_dir(run_dir, resume)
        self._place()
        self._open_data()
        seed_everything(self.cfg.seed)
        self.model = self._build_model(last if resume else None)
        self._plan_dev_eval()
        self._build_step()
        self._build_optimization()
        self.epoch, self.step, self.best_rsum = 0, 0, None
        self.best_epoch: int | None = None
        if resume:
            self._load_state(last)
        if self.ctx.is_main:  # on resume: records changed settings (more --epochs, moved --data)
            self._write_run(resume)
        self._log_start()

    # -- set-up, one concern each ---------------------------------------------------------------------
    def _open_run_dir(self, run_dir: str | Path, resume: bool) -> Path:
        """The run folder, checked for what ``resume`` expects, interrupted swaps finished; -> its ``last/``."""
        self.run_dir = writable_dir(Path(run_dir), "run folder")
        last = self.run_dir / "last"
        check_run_folder(self.run_dir)
        if not resume and (last.exists() or (self.run_dir / ".last.old").exists()):
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick a new --out."
            )
        recover_folder(self.run_dir / "best")  # a swap interrupted by a crash is finished first
        if resume and not recover_folder(last).is_dir():
            raise CheckpointError(
                f"{self.run_dir} has no checkpoint yet (no finished epoch): start it again without --resume."
            )
        if resume:  # run.json edited since the checkpoint: refused; a log that disagrees with it: repaired or warned
            saved_state = load_training_state(last)
            check_resume(self.run_dir, self.spec, last, saved_state)
            if self._lock is not None:
                reconcile_metrics(self.run_dir, saved_state.epoch)
        return last

    def _place(self) -> None:
        """Where and how this process computes: the process group, its device, the mixed precision."""
        self.ctx: DistContext = init_distributed(resolve_device(self.cfg.device).type)
        self.device = resolve_device(self.cfg.device, self.ctx.local_rank)
        self.amp = resolve_amp(self.cfg.amp, self.device)

    def _plan_dev_eval(self) -> None:
        """The dev protocol this model, dev split and device get (``training.dev_eval``), and its subset."""
        self.dev_protocol = resolve_dev_eval(self.model, self.dev_set, self.cfg, self.device)
        self.dev_subset = (
            open_split(self.spec.data, "dev", max_images=self.dev_protocol["subset_images"])
            if self.dev_protocol["mode"] == "subset"
            else None
        )

    def _build_step(self) -> None:
        """The training step (negatives, loss), wrapped for DistributedDataParallel in a process group."""
        self.training_step = TrainingStep(self.model, self.cfg.hard_negatives, self.ctx, self.cfg.global_negatives)
        self.step_module: torch.nn.Module = self.training_step
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = DistributedDataParallel(self.training_step, device_ids=device_ids)
        #: the loss's own setting, which warm-up epochs suspend (all negatives) and later epochs restore
        self.hardest_negative = bool(
            self.model.loss_fn.supports_hardest_negative and self.model.loss_fn.hardest_negative
        )

    def _build_optimization(self) -> None:
        """The trainable parameters, the optimizer, its step schedule and the gradient scaler."""
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.cfg.lr_decay_every, gamma=self.cfg.lr_decay
        )
        self.scaler = make_scaler(self.device, self.amp)

    def _log_start(self) -> None:
        logger.info(
            "training on %s (amp %s, %d process(es)), %d trainable parameters",
            self.device,
            self.amp,
            self.ctx.world_size,
            sum(p.numel() for p in self.params),
        )
        logger.info(
            "dev evaluation after each epoch on %s (%s); its dev rsum chooses the best checkpoint",
            self.dev_protocol["scores"],
            self.dev_protocol["reason"],
        )

    def _write_run(self, resume: bool) -> None:
        current = data_fingerprint(self.spec.data)
        if not resume:
            clean_start(self.run_dir)
        elif self.spec.data_fingerprint and changed_files(self.spec.data_fingerprint, current):
            changed = ", ".join(changed_files(self.spec.data_fingerprint, current))
            message = (
                f"The data in {self.spec.data} changed since this run started ({changed}): the resumed run trains "
                "on other data than its first epochs did. Point --data at the original data, or start a new run."
            )
            warnings.warn(message, MMZooWarning, stacklevel=3)
        self.spec.data_fingerprint = current
        atomic_write_json(
            self.run_dir / RUN_NAME,
            {**self.spec.to_dict(), "world_size": self.ctx.world_size, "dev_eval": self.dev_protocol},
        )

    def _open_data(self) -> None:
        self.train_set = open_split(self.spec.data, "train")
        self.dev_set = open_split(self.spec.data, "dev")
        per_process = len(self.train_set) // self.ctx.world_size
        if per_process < self.cfg.batch_size * self.cfg.grad_accum:
            raise ConfigError(
                f"The training split has {len(self.train_set)} captions, {per_process} per process: fewer than one "
                f"step of batch_size x grad_accum = {self.cfg.batch_size * self.cfg.grad_accum}. Lower the batch size."
            )

    def _build_model(self, checkpoint: Path | None) -> MatchingModel:
        """A new model (its text encoder fitted to the training captions), or the checkpoint's to resume."""
        if checkpoint is not None:
            model = load_folder(checkpoint).train()
        else:
            model = create_model(self.spec.model)
            model.text.fit(list(self.train_set.captions))
        # what the features were: evaluating the model on features made otherwise warns (the extractor guard)
        if checkpoint is None or "features" not in model.extra_config:
            facts = {k: v for k, v in feature_facts(self.train_set.manifest).items() if v is not None}
            model.extra_config["features"] = {"region_dim": self.train_set.region_dim, **facts}
        return model.to(self.device).train()

    # -- state --------------------------------------------------------------------------------------
    def _load_state(self, folder: Path) -> None:
        state = load_training_state(folder)
        try:
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
        except (ValueError, KeyError, TypeError) as exc:  # torch's words for "another optimizer layout"
            raise CheckpointError(
                f"{folder} holds the optimizer of other training settings ({exc}): resume with the run's own "
                "settings (its run.json), or start a new run from its weights."
            ) from None
        if state.scaler and self.amp == state.amp == "fp16":
            self.scaler.load_state_dict(state.scaler)
        elif state.amp != self.amp:
            logger.warning("the checkpoint trained with amp=%s, this run uses %s", state.amp, self.amp)
        restore_rng(state.rng)
        self.epoch, self.step, self.best_rsum = state.epoch, state.step, state.best_rsum
        kept = [m for m in read_metrics(self.run_dir) if m.get("epoch", 0) <= self.epoch]
        self.best_epoch = kept[-1].get("best_epoch") if kept else None
        if self.ctx.is_main:  # forget epochs logged after the checkpoint was written
            write_metrics(self.run_dir, kept)
        logger.info("resumed %s after epoch %d (step %d)", self.run_dir, self.epoch, self.step)

    def _state(self) -> TrainingState:
        return TrainingState(
            epoch=self.epoch,
            step=self.step,
            best_rsum=self.best_rsum,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
            rng=capture_rng(),
            amp=self.amp,
            training=self.cfg.to_dict(),
        )

    def base_lr(self) -> float:
        """The learning rate of the groups without a multiplier (``lr`` scheduled so far)."""
        for group in self.optimizer.param_groups:
            multiplier = group.get("lr_multiplier", 1.0)
            if multiplier > 0:
                return float(group["lr"]) / multiplier
        return 0.0

    # -- loop ---------------------------------------------------------------------------------------
    def loader(self, epoch: int) -> DataLoader:
        """The training batches of ``epoch`` for this process: shuffled by (seed, epoch), full batches only."""
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=self.cfg.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.cfg.num_workers,
            collate_fn=collate_pairs,
            generator=torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch),
            worker_init_fn=_seed_worker,
            pin_memory=self.device.type == "cuda",
        )

    def set_negatives(self, epoch: int) -> None:
        """Warm-up epochs sum over all negatives (every pair fused, whatever ``hard_negatives`` says); later
        epochs restore the loss's own setting (the hardest negative, for the triplet loss's default) among the
        ``hard_negatives`` candidates."""
        warm = epoch < self.cfg.warmup_epochs
        if self.model.loss_fn.supports_hardest_negative:
            self.model.loss_fn.set_hardest_negative(self.hardest_negative and not warm)
        self.training_step.hard_negatives = "all" if warm else self.cfg.hard_negatives

    def train_epoch(self, epoch: int) -> EpochResult:
        from tqdm import tqdm

        self.set_negatives(epoch)
        self.model.train()
        loader = self.loader(epoch)
        accum = self.cfg.grad_accum
        steps = len(loader) // accum
        batches = iter(loader)
        ddp = self.step_module if self.ctx.enabled else None
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not (self.progress and self.ctx.is_main),
            dynamic_ncols=True,
        )
        total_loss, pairs, start = 0.0, 0, time.perf_counter()
        log_at = {math.ceil(steps * tenth / 10) for tenth in range(1, 11)}
        for done in range(1, steps + 1):
            for micro in range(accum):
                batch = next(batches)
                sync = nullcontext() if ddp is None or micro == accum - 1 else ddp.no_sync()
                with sync:
                    with autocast(self.device, self.amp):
                        features = batch.features.to(self.device, non_blocking=True)
                        loss = self.step_module(features, batch.captions, batch.mask.to(self.device))
                    finite = bool(torch.isfinite(loss))
                    if not true_everywhere(finite, self.ctx, self.device):  # every process stops, not one
                        if finite:
                            raise TrainingError(
                                f"Epoch {epoch + 1}, step {self.step + 1}: the loss of another process was not "
                                "finite (its own error names the batch); every process stops."
                            )
                        raise health.non_finite_loss(
                            loss,
                            epoch=epoch + 1,
                            step=self.step + 1,
                            caption_ids=batch.caption_ids.tolist(),
                            features=batch.features,
                            model=self.model,
                            cfg=self.cfg,
                        )
                    self.scaler.scale(loss / accum).backward()
                total_loss += float(loss.detach())
                pairs += len(batch.captions) * self.ctx.world_size
            self.scaler.unscale_(self.optimizer)
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / (done * accum):.3f}", pairs_s=f"{pairs / max(elapsed, 1e-9):.0f}")
            if not self.progress and self.ctx.is_main and done in log_at:  # no bar: a log line every tenth
                log_progress(epoch, self.cfg.epochs, done, steps, total_loss / (done * accum), pairs, elapsed)
        bar.close()
        seconds = time.perf_counter() - start
        mean_loss = all_reduce_mean(total_loss / max(steps * accum, 1), self.ctx, self.device)
        return EpochResult(mean_loss, pairs, seconds)

    def fit(self) -> list[dict[str, Any]]:
        """Train the remaining epochs; returns the metrics records written by this call."""
        records = []
        try:
            while self.epoch < self.cfg.epochs:
                epoch = self.epoch
                lr = self.base_lr()
                result = self.train_epoch(epoch)
                self.scheduler.step()
                dev, dev_full = self.evaluate_dev(final=epoch + 1 == self.cfg.epochs)
                diagnosis = self.check_health(result.loss, dev)
                self.epoch = epoch + 1
                record = {
                    "epoch": self.epoch,
                    "step": self.step,
                    "loss": result.loss,
                    "lr": lr,
                    "hardest_negative": bool(
                        self.model.loss_fn.supports_hardest_negative and self.model.loss_fn.hardest_negative
                    ),
                    "hard_negatives": self.training_step.hard_negatives,
                    "pairs_per_s": result.pairs / max(result.seconds, 1e-9),
                    "seconds": result.seconds,
                    "dev": dev,
                    "dev_eval": self.dev_protocol["mode"],
                    "dev_scored": self.dev_protocol["scores"],
                    **({"dev_full": dev_full} if dev_full is not None else {}),
                    "collapse": diagnosis.signs if diagnosis.collapsed else [],
                }
                records.append(record)
                if self.ctx.is_main:
                    if diagnosis.collapsed:  # one warning (the CLI shows it), not a log line beside it
                        warnings.warn(diagnosis.message(self.epoch), MMZooWarning, stacklevel=2)
                    self._write_epoch(record, dev)
                    for callback in self.callbacks:
                        callback(record)
                barrier(self.ctx)
        finally:
            shutdown_distributed(self.ctx)
            self.release_lock()
        return records

    def evaluate_dev(self, final: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(dev metrics by the run's dev protocol, the full evaluation too when ``final`` and the protocol is cheaper).

        The per-epoch metrics always come from the same protocol, so that the best epoch is chosen among
        comparable numbers; the full evaluation of the last epoch is recorded beside them (``dev_full``).
        """
        mode = self.dev_protocol["mode"]
        if mode == "full":
            return evaluate_split(self.model, self.dev_set, self.ctx, self.cfg.eval_batch_size, self.device), None
        if mode == "subset":
            dev = evaluate_split(self.model, self.dev_subset, self.ctx, self.cfg.eval_batch_size, self.device)
        else:
            dev = evaluate_split(
                self.model, self.dev_set, self.ctx, self.cfg.eval_batch_size, self.device, rerank=self.cfg.dev_rerank
            )
        full = (
            evaluate_split(self.model, self.dev_set, self.ctx, self.cfg.eval_batch_size, self.device) if final else None
        )
        return dev, full

    @torch.no_grad()
    def check_health(self, loss: float, dev: dict[str, Any]) -> health.Diagnosis:
        """Collapse signs after an epoch: the spread of what the model scores with on a dev sample (its pooled
        embeddings, or the fused scores of a model that scores with the fused term alone), the tied loss, chance
        recall."""
        was_training = self.model.training
        self.model.eval()
        try:
            n = min(PROBE_ITEMS, self.dev_set.num_images)
            features, mask = self.dev_set.image_features(range(n))
            images = encode_images(self.model, self.dev_set, range(n), batch_size=self.cfg.eval_batch_size)
            cpi = self.dev_set.captions_per_image
            texts = encode_captions(
                self.model, self.dev_set.captions[: n * cpi : cpi], batch_size=self.cfg.eval_batch_size
            )
            fused_only = self.model.uses_fusion and self.model.dual_weight == 0
            if fused_only:  # its pooled vectors are never scored: read the scores it ranks with
                sims = self.model.similarity(images.to(self.device), texts.to(self.device)).float().cpu()
                image_spread, text_spread = health.score_spread(sims)
            else:
                image_spread, text_spread = health.spread(images.pooled), health.spread(texts.pooled)
            tied = self.tied_loss()
        finally:
            self.model.train(was_training)
        scored = self.dev_subset if self.dev_protocol["mode"] == "subset" else self.dev_set  # what `dev` measured
        return health.diagnose(
            loss=loss,
            tied_loss=tied,
            dev_rsum=float(dev.get("rsum", float("nan"))),
            chance=health.chance_rsum(scored.num_images, scored.captions_per_image),
            image_spread=image_spread,
            text_spread=text_spread,
            feature_std=float(features[mask].std()) if mask.sum() > 1 else 0.0,
            cfg=self.cfg,
            hardest_negative=bool(self.model.loss_fn.supports_hardest_negative and self.model.loss_fn.hardest_negative),
            spread_of="fused scores" if fused_only else "embeddings",
        )

    def tied_loss(self) -> float:
        """The epoch loss of a collapsed model (all scores equal) as this run computes its loss: over the global
        batch with global negatives, else per process and scaled by the world size for a summed loss."""
        loss_fn, world, batch = self.model.loss_fn, self.ctx.world_size, self.cfg.batch_size
        if self.ctx.enabled and self.cfg.global_negatives:
            return health.tied_loss(loss_fn, batch * world, self.device)
        scale = world if self.ctx.enabled and loss_fn.reduction == "sum" else 1
        return health.tied_loss(loss_fn, batch, self.device) * scale

    def _write_epoch(self, record: dict[str, Any], dev: dict[str, Any]) -> None:
        rsum = float(dev.get("rsum", float("nan")))
        logger.info(
            "epoch %d: loss %.4f, dev rsum %.2f on %s (i2t R@1 %.1f, t2i R@1 %.1f), %.0f pairs/s",
            record["epoch"],
            record["loss"],
            rsum,
            record["dev_scored"],
            dev.get("i2t_r1", float("nan")),
            dev.get("t2i_r1", float("nan")),
            record["pairs_per_s"],
        )
        if "dev_full" in record:
            logger.info(
                "epoch %d: full dev rsum %.2f on %s (recorded as dev_full; the best checkpoint is chosen on %s)",
                record["epoch"],
                float(record["dev_full"].get("rsum", float("nan"))),
                describe_dev({"mode": "full"}, self.dev_set.num_images),
                record["dev_scored"],
            )
        best = not math.isnan(rsum) and (self.best_rsum is None or rsum > self.best_rsum)
        if best:
            self.best_rsum, self.best_epoch = rsum, record["epoch"]
        record["best_epoch"], record["best_rsum"] = self.best_epoch, self.best_rsum
        try:
            mark_collapse(self.model, record)  # this epoch's health travels with its best/ and last/ saves
            write_metrics(self.run_dir, [*read_metrics(self.run_dir), record])
            if best:
                save_checkpoint(self.run_dir / "best", self.model)
                collapsed = " (but the model looks collapsed, see the warning)" if record["collapse"] else ""
                logger.info("new best dev rsum %.2f -> %s%s", rsum, self.run_dir / "best", collapsed)
            save_checkpoint(self.run_dir / "last", self.model, self._state())
        except (OSError, RuntimeError) as exc:
            if is_storage_error(exc):
                raise storage_error(exc, self.run_dir, "checkpoint in") from None
            raise


def log_progress(epoch: int, epochs: int, done: int, steps: int, loss: float, pairs: int, elapsed: float) -> None:
    """One progress line of a run without a progress bar (``--no-progress``): where the epoch is, its mean loss so
    far, the speed and the time the epoch still needs."""
    remaining = elapsed / done * (steps - done)
    logger.info(
        "epoch %d/%d: step %d/%d (%d%%), loss %.4f, %.0f pairs/s, %s left in this epoch",
        epoch + 1,
        epochs,
        done,
        steps,
        round(100 * done / steps),
        loss,
        pairs / max(elapsed, 1e-9),
        time.strftime("%H:%M:%S", time.gmtime(remaining)) if remaining < 86_400 else f"{remaining / 3600:.0f} h",
    )


def mark_collapse(model: torch.nn.Module, record: dict[str, Any]) -> None:
    """Record in the model's ``config.json`` (``training_health``) that the epoch being saved looked collapsed, so
    that its card and ``from_pretrained`` (hence ``mmzoo eval``, ``search``) say so; a healthy epoch clears it."""
    extra = model.extra_config
    if record["collapse"]:
        extra["training_health"] = {"epoch": record["epoch"], "collapsed": list(record["collapse"])}
    else:
        extra.pop("training_health", None)


#: dev_eval="auto": the dev pairs a per-epoch evaluation may score, per device type. Measured on shapes
#: (benchmarks/dev_eval.py, docs/performance.md section 6): on the 2-core CPU every pair of the 500 x 2,500 dev
#: split took 1.3x a training epoch; the first 100 or 250 images took 6% / 34% and picked the same best epoch, while
#: reranking by MMCA's own <i0, c0> (K 20 or 50) picked another. 5 M pairs is a COCO 1K-sized split, seconds on a GPU.
AUTO_DEV_PAIRS = {"cpu": 250_000, "cuda": 5_000_000}


def resolve_dev_eval(model: MatchingModel, dev_set: Any, cfg: TrainConfig, device: torch.device | str = "cpu") -> dict:
    """What ``cfg.dev_eval`` means for this model, dev split and device: the mode, its size and why (for run.json).

    ``auto``: ``full`` for a model without a fusion block (one matrix product) or a dev split within the device's
    pair budget (:data:`AUTO_DEV_PAIRS`); otherwise ``subset``: the first N images, N the largest that fits the
    budget (at most ``dev_subset``, at least 10).
    """
    cpi = max(1, len(dev_set.captions) // max(1, dev_set.num_images))
    pairs = dev_set.num_images * len(dev_set.captions)
    budget = AUTO_DEV_PAIRS.get(torch.device(device).type, AUTO_DEV_PAIRS["cpu"])
    mode, reason, subset = cfg.dev_eval, "set in the training config", cfg.dev_subset
    if mode == "auto":
        if not model.uses_fusion:
            mode, reason = "full", "no fusion block: a full evaluation is one matrix product"
        elif pairs <= budget:
            mode, reason = "full", f"{pairs:,} dev pairs within the {torch.device(device).type} budget of {budget:,}"
        else:
            subset = max(10, min(cfg.dev_subset, math.isqrt(budget // cpi)))
            mode = "subset"
            reason = f"{pairs:,} dev pairs over the {torch.device(device).type} budget of {budget:,}: the first {subset} images"
    protocol: dict[str, Any] = {"mode": mode, "requested": cfg.dev_eval, "reason": reason, "dev_pairs": pairs}
    if mode == "rerank":
        protocol["rerank"] = cfg.dev_rerank
    elif mode == "subset":
        protocol["subset_images"] = min(subset, dev_set.num_images)
    protocol["scores"] = describe_dev(protocol, dev_set.num_images)
    protocol["best_checkpoint"] = f"the epoch with the best dev rsum on {protocol['scores']}"
    return protocol


def describe_dev(protocol: dict[str, Any], num_images: int) -> str:
    """What a dev rsum of this protocol measured, in words: "the first 223 of 500 dev images", ..."""
    if protocol["mode"] == "subset":
        return f"the first {protocol['subset_images']} of {num_images} dev images (dev_eval subset)"
    if protocol["mode"] == "rerank":
        return f"all {num_images} dev images, shortlist-and-rerank K={protocol['rerank']} (dev_eval rerank)"
    return f"all {num_images} dev images"


def summary(records: list[dict[str, Any]]) -> str:
    """The run's final line: the last epoch's dev rsum and what it measured, the full dev rsum where the protocol
    was cheaper, and which number chose the best checkpoint."""
    last = records[-1]
    scored = last.get("dev_scored", "the dev split")
    line = f"trained {last['epoch']} epoch(s); dev rsum {float(last['dev'].get('rsum', float('nan'))):.2f} on {scored}"
    if "dev_full" in last:
        line += f" (full dev rsum {float(last['dev_full'].get('rsum', float('nan'))):.2f})"
    if last.get("best_epoch") is not None:
        line += (
            f"; best checkpoint: epoch {last['best_epoch']}, chosen by its dev rsum {last['best_rsum']:.2f} on {scored}"
        )
    return line


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters, one group per learning-rate multiplier (``lr_groups``)."""
    groups: dict[float, list[torch.nn.Parameter]] = {}
    used: set[str] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        prefix = max((k for k in cfg.lr_groups if name == k or name.startswith(k + ".")), key=len, default=None)
        if prefix is not None:
            used.add(prefix)
        groups.setdefault(cfg.lr_groups[prefix] if prefix is not None else 1.0, []).append(param)
    unused = sorted(set(cfg.lr_groups) - used)
    if unused:
        raise ConfigError(
            f"training.lr_groups names {unused}, which match no trainable parameter (prefixes of parameter names "
            "such as 'text.bert' or 'visual.fc'; a frozen part has none)."
        )
    param_groups = [{"params": ps, "lr": cfg.lr * m, "lr_multiplier": m} for m, ps in sorted(groups.items())]
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(
    spec: RunSpec | None = None,
    run_dir: str | Path = "run",
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> list[dict[str, Any]]:
    """Train a new run (``spec``) or continue one (``resume=True``; ``spec`` defaults to ``run_dir/run.json``).

    ``callbacks`` are called with each epoch's ``metrics.jsonl`` record after it is written
    (:class:`mmzoo.training.TensorBoardLogger` is one).

    Examples:
        >>> from mmzoo.training import prepare_run, train
        >>> train(prepare_run("data/shapes", "vsepp", epochs=2), "runs/vsepp")  # doctest: +SKIP
    """
    if resume:
        spec = spec if spec is not None else read_run(run_dir)
    elif spec is None:
        raise ConfigError("train() needs a RunSpec for a new run (see mmzoo.training.prepare_run).")
    return Trainer(spec, run_dir, resume=resume, progress=progress, callbacks=callbacks).fit()


__all__ = ["METRICS_NAME", "RUN_NAME", "Trainer", "build_optimizer", "read_metrics", "read_run", "summary", "train"]
