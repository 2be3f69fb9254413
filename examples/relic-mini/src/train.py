"""Training loop: one CSV row per epoch, progress lines, best checkpoint, early stopping."""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from src.config import PipelineConfig, SchedulerConfig
from src.metrics import compute_metrics
from src.model import build_model
from src.runtime import RunLogFile, Runtime


def train_run_dir(config: PipelineConfig, kind: str) -> Path:
    """Return ``<kind>/<model>/train/<train_run_id>``, where kind is ``logs`` or ``models``."""
    return Path(kind) / config.model.model / "train" / config.run.train_run_id


class EpochLog:
    """The per-epoch CSV that the HPO orchestrator reads while the run is still training.

    The header is ``Epoch,Epoch Time,Train Loss,Val Loss,Val <metric>...,Learning Rate``.
    Each row is flushed as soon as it is written, so a reader finds it when the epoch ends.
    A new run with the same run id replaces the file, so rows of an earlier attempt never mix in.
    """

    def __init__(self, path: Path, metric_names: tuple[str, ...]):
        self._metric_names = metric_names
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(
            ["Epoch", "Epoch Time", "Train Loss", "Val Loss", *(f"Val {name}" for name in metric_names), "Learning Rate"]
        )
        self._file.flush()

    def append(self, epoch: int, seconds: float, train_loss: float, val_loss: float, metrics: dict[str, float], lr: float) -> None:
        self._writer.writerow([epoch, seconds, train_loss, val_loss, *(metrics[name] for name in self._metric_names), lr])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def train(config: PipelineConfig, train_set: TensorDataset, val_set: TensorDataset, runtime: Runtime, logger: logging.Logger) -> Path:
    """Train the model and return the path of the best checkpoint.

    The checkpoint is saved whenever the monitored validation value improves. Training stops
    after ``early_stopping_patience`` epochs without improvement, or after ``epochs``.
    """
    log_dir = train_run_dir(config, "logs")
    model_dir = train_run_dir(config, "models")
    best_path = model_dir / "best_model.pth"
    if runtime.is_main:
        log_dir.mkdir(parents=True, exist_ok=True)
        model_dir.mkdir(parents=True, exist_ok=True)

    with RunLogFile(logger, log_dir) if runtime.is_main else contextlib.nullcontext():
        _Trainer(config, train_set, val_set, runtime, logger).fit(log_dir / "training_step.csv", best_path)
    return best_path


class _Trainer:
    def __init__(self, config: PipelineConfig, train_set: TensorDataset, val_set: TensorDataset, runtime: Runtime, logger: logging.Logger):
        self.config = config
        self.training = config.training
        self.runtime = runtime
        self.logger = logger
        self.val_set = val_set

        generator = torch.Generator().manual_seed(config.run.seed)
        self.sampler = (
            DistributedSampler(train_set, shuffle=True, seed=config.run.seed, drop_last=config.data.drop_last)
            if runtime.distributed
            else None
        )
        self.train_loader = DataLoader(
            train_set,
            batch_size=self.training.batch_size,
            shuffle=self.sampler is None,
            sampler=self.sampler,
            drop_last=config.data.drop_last,
            num_workers=config.data.num_workers,
            generator=generator,
        )
        if len(self.train_loader) == 0:
            raise ValueError(
                f"training_config.batch_size {self.training.batch_size} with drop_last leaves no batch of the "
                f"{len(train_set)} training samples; lower the batch size or set drop_last to false"
            )

        # Parameters are created on the device, so a model too large for it fails there with
        # the device's out-of-memory error instead of filling host memory first.
        with runtime.device:
            self.model = build_model(config.model)
        if config.run.load_checkpoint_path:
            self.model.load_state_dict(load_model_state(config.run.load_checkpoint_path, runtime.device))
            logger.info("Initial weights loaded from %s", config.run.load_checkpoint_path)
        self.trained_model: nn.Module = (
            DistributedDataParallel(self.model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
            if runtime.distributed
            else self.model
        )

        pos_weight = None if self.training.pos_weight is None else torch.tensor(self.training.pos_weight, device=runtime.device)
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.training.lr,
            betas=self.training.betas,
            eps=self.training.eps,
            weight_decay=self.training.weight_decay,
        )
        self.scheduler = _build_scheduler(self.optimizer, self.training.scheduler, self.training.lr, self.training.epochs * len(self.train_loader))
        self.autocast_enabled = config.device.use_mixed_precision and runtime.device.type == "cuda"

    def fit(self, csv_path: Path, best_path: Path) -> None:
        epoch_log = EpochLog(csv_path, self.training.validation_metrics) if self.runtime.is_main else None
        tracker = _BestValueTracker(maximize=self.training.monitor_metric != "loss", patience=self.training.early_stopping_patience)
        parameter_count = sum(parameter.numel() for parameter in self.model.parameters())
        self.logger.info(
            "Training %s (%d parameters) on %s for up to %d epochs, %d steps per epoch",
            self.config.model.model, parameter_count, self.runtime.device, self.training.epochs, len(self.train_loader),
        )

        try:
            for epoch in range(1, self.training.epochs + 1):
                started = time.perf_counter()
                train_loss = self._train_epoch(epoch)
                stop = False
                if epoch_log is not None:
                    stop = self._finish_epoch(epoch, started, train_loss, epoch_log, tracker, best_path)
                if self._broadcast_stop(stop):
                    break
        finally:
            if epoch_log is not None:
                epoch_log.close()

    def _finish_epoch(
        self, epoch: int, started: float, train_loss: float, epoch_log: EpochLog, tracker: _BestValueTracker, best_path: Path
    ) -> bool:
        """Validate, append the CSV row, save checkpoints and return whether to stop early."""
        val_loss, metrics = self._validate()
        seconds = time.perf_counter() - started
        epoch_log.append(epoch, seconds, train_loss, val_loss, metrics, self.optimizer.param_groups[0]["lr"])
        self.logger.info(
            "Epoch %d done | %.2f s | Train Loss %.4f | Val Loss %.4f | %s",
            epoch, seconds, train_loss, val_loss, " | ".join(f"Val {name} {value:.4f}" for name, value in metrics.items()),
        )

        monitor = self.training.monitor_metric
        value = val_loss if monitor == "loss" else metrics[monitor]
        if tracker.update(value):
            save_checkpoint(self.model, self.config, epoch, monitor, value, best_path)
            self.logger.info("New best val %s %.4f, checkpoint saved to %s", monitor, value, best_path)
        if not self.config.run.save_best_only:
            save_checkpoint(self.model, self.config, epoch, monitor, value, best_path.with_name("last_model.pth"))

        if tracker.should_stop:
            self.logger.info(
                "Early stopping after epoch %d: val %s has not improved for %d epoch(s)", epoch, monitor, tracker.patience
            )
        return tracker.should_stop

    def _train_epoch(self, epoch: int) -> float:
        """Run one epoch of optimizer steps and return the mean training loss per sample."""
        self.trained_model.train()
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        device = self.runtime.device
        steps = len(self.train_loader)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        sample_count = torch.zeros((), device=device, dtype=torch.float64)

        for step, (images, labels) in enumerate(self.train_loader, start=1):
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast_enabled):
                logits = self.trained_model(images)
            loss = self.loss_fn(logits.float(), labels)

            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.training.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.training.grad_clip_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()

            loss_sum += loss.detach().double() * len(labels)
            sample_count += len(labels)
            if step % self.training.log_every_n_steps == 0 or step == steps:
                # Loss is the mean per sample over this epoch so far, on this process.
                self.logger.info(
                    "Epoch %d | Step %d/%d | Loss %.4f | LR %.4e",
                    epoch, step, steps, (loss_sum / sample_count).item(), self.optimizer.param_groups[0]["lr"],
                )

        if self.runtime.distributed:
            totals = torch.stack([loss_sum, sample_count])
            dist.all_reduce(totals)
            loss_sum, sample_count = totals[0], totals[1]
        return (loss_sum / sample_count).item()

    @torch.no_grad()
    def _validate(self) -> tuple[float, dict[str, float]]:
        probabilities, labels, loss = predict(self.model, self.val_set, self.training.batch_size, self.runtime.device, self.loss_fn)
        if not np.isfinite(probabilities).all():
            raise FloatingPointError(
                f"training diverged: the model predicts NaN on the validation set (lr {self.training.lr}); "
                "lower training_config.optimizer.lr or set training_config.grad_clip_norm"
            )
        return loss, compute_metrics(self.training.validation_metrics, labels, probabilities)

    def _broadcast_stop(self, stop: bool) -> bool:
        """Share rank 0's early-stopping decision, so that every DDP process leaves the loop together."""
        if not self.runtime.distributed:
            return stop
        flag = torch.tensor([int(stop)], device=self.runtime.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())


class _BestValueTracker:
    """The best monitored value so far and the number of epochs since it last improved."""

    def __init__(self, maximize: bool, patience: int | None):
        self.maximize = maximize
        self.patience = patience
        self.best_value = -math.inf if maximize else math.inf
        self.epochs_without_improvement = 0

    def update(self, value: float) -> bool:
        """Record this epoch's value and return whether it is a new best."""
        improved = value > self.best_value if self.maximize else value < self.best_value
        if improved:
            self.best_value = value
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience


@torch.no_grad()
def predict(model: nn.Module, dataset: TensorDataset, batch_size: int, device: torch.device, loss_fn: nn.Module) -> tuple[np.ndarray, np.ndarray, float]:
    """Return the predicted probabilities, the labels and the mean loss over ``dataset``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=max(batch_size, 256), shuffle=False)
    probabilities, labels, loss_sum = [], [], 0.0
    for images, batch_labels in loader:
        logits = model(images.to(device)).float()
        batch_labels = batch_labels.to(device)
        loss_sum += loss_fn(logits, batch_labels).item() * len(batch_labels)
        probabilities.append(torch.sigmoid(logits).cpu().numpy())
        labels.append(batch_labels.cpu().numpy())
    return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64), loss_sum / len(dataset)


def save_checkpoint(model: nn.Module, config: PipelineConfig, epoch: int, monitor: str, value: float, path: Path) -> None:
    """Write the weights and the model config to ``path``, replacing it only once the write is complete."""
    checkpoint = {
        "model_state_dict": model.state_dict(),
        "model_config": config.model.to_dict(),
        "epoch": epoch,
        "monitor_metric": monitor,
        "monitor_value": float(value),
    }
    partial_path = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial_path)
    os.replace(partial_path, path)


def load_checkpoint(path: str | Path, device: torch.device) -> dict:
    """Read a checkpoint written by save_checkpoint, or a bare state dict, as a checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found. Set run_config.load_checkpoint_path, or set run_config.train_run_id "
            "to a run that saved best_model.pth"
        )
    loaded = torch.load(path, map_location=device, weights_only=True)
    if isinstance(loaded, dict) and "model_state_dict" in loaded:
        return loaded
    return {"model_state_dict": loaded}


def load_model_state(path: str | Path, device: torch.device) -> dict:
    return load_checkpoint(path, device)["model_state_dict"]


def _build_scheduler(
    optimizer: torch.optim.Optimizer, config: SchedulerConfig, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Return a scheduler stepped after every optimizer step, or None for ``type: none``.

    OneCycle peaks at ``max_lr`` when set, else at the optimizer's lr, so that searching
    ``training_config.optimizer.lr`` also moves the peak.
    """
    if config.type == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.max_lr if config.max_lr is not None else lr,
            total_steps=total_steps,
            pct_start=config.pct_start,
            div_factor=config.div_factor,
            final_div_factor=config.final_div_factor,
            anneal_strategy=config.anneal_strategy,
        )
    if config.type == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=config.eta_min)
    return None
