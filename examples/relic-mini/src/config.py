"""Load and validate the pipeline's YAML config.

The YAML has the sections of the RELIC pipeline contract: run_config, device_config,
data_config, model_config, training_config and evaluate. The sections optimization and
nas_lite belong to the HPO orchestrator, and this pipeline ignores them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.metrics import SUPPORTED_METRICS

MODES = ("full_pipeline", "train_only", "eval_only")
DEVICES = ("cpu", "cuda", "auto")
SCHEDULERS = ("none", "onecycle", "cosine")
SUPPORTED_MODELS = ("v3",)

_REQUIRED = object()


class ConfigError(ValueError):
    """An invalid or missing config value; the message names its dot path."""


@dataclass(frozen=True)
class RunConfig:
    mode: str
    seed: int
    train_run_id: str
    eval_run_id: str
    load_checkpoint_path: str | None
    save_best_only: bool


@dataclass(frozen=True)
class DeviceConfig:
    device: str
    ddp_enabled: bool
    use_mixed_precision: bool
    num_threads: int


@dataclass(frozen=True)
class DataConfig:
    positive_digit: int
    split_seed: int
    val_fraction: float
    test_fraction: float
    max_train_samples: int | None
    num_workers: int
    drop_last: bool


@dataclass(frozen=True)
class ModelConfig:
    model: str
    d_model: int
    encoder_layers: int
    cross_attn_layers: int
    n_heads: int
    ffn_multiplier: int
    dropout: float
    cross_attention_dropout: float
    head_hidden_dims: tuple[int, ...]
    head_dropout: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain Python values, for storing in a checkpoint."""
        values = dict(self.__dict__)
        values["head_hidden_dims"] = list(self.head_hidden_dims)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        return cls(**{**values, "head_hidden_dims": tuple(values["head_hidden_dims"])})


@dataclass(frozen=True)
class SchedulerConfig:
    type: str
    max_lr: float | None
    pct_start: float
    div_factor: float
    final_div_factor: float
    anneal_strategy: str
    eta_min: float


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    batch_size: int
    early_stopping_patience: int | None
    monitor_metric: str
    validation_metrics: tuple[str, ...]
    log_every_n_steps: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    scheduler: SchedulerConfig
    pos_weight: float | None
    grad_clip_norm: float | None


@dataclass(frozen=True)
class PipelineConfig:
    run: RunConfig
    device: DeviceConfig
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    eval_metrics: tuple[str, ...]


def load_config(path: str | Path) -> PipelineConfig:
    """Read the YAML file at ``path`` and return the validated config.

    Run ids that are null become one timestamp id (``YYYYMMDD_HHMMSS``) shared by the train
    and eval runs. Raises ConfigError naming the first invalid value.
    """
    with open(path, encoding="utf-8") as file:
        raw = yaml.safe_load(file)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must contain a YAML mapping of sections, but got {type(raw).__name__}")
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> PipelineConfig:
    run = _parse_run(_section(raw, "run_config"))
    training = _parse_training(_section(raw, "training_config"))
    return PipelineConfig(
        run=run,
        device=_parse_device(_section(raw, "device_config", required=False)),
        data=_parse_data(_section(raw, "data_config", required=False), run.seed),
        model=_parse_model(_section(raw, "model_config")),
        training=training,
        eval_metrics=_parse_metric_list(_section(raw, "evaluate", required=False), "metrics", default=["auprc", "auroc"]),
    )


def _parse_run(section: _Section) -> RunConfig:
    mode = section.get("mode", str, default="full_pipeline")
    if mode not in MODES:
        raise ConfigError(f"{section.path('mode')} must be one of {list(MODES)}, but got {mode!r}")
    timestamp_id = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    return RunConfig(
        mode=mode,
        seed=section.get("seed", int, default=47),
        train_run_id=section.get("train_run_id", str, default=None) or timestamp_id,
        eval_run_id=section.get("eval_run_id", str, default=None) or timestamp_id,
        load_checkpoint_path=section.get("load_checkpoint_path", str, default=None),
        save_best_only=section.get("save_best_only", bool, default=True),
    )


def _parse_device(section: _Section) -> DeviceConfig:
    device = section.get("device", str, default="auto")
    if device not in DEVICES:
        raise ConfigError(f"{section.path('device')} must be one of {list(DEVICES)}, but got {device!r}")
    num_threads = section.get("num_threads", int, default=1)
    _check_at_least(section, "num_threads", num_threads, 1)
    return DeviceConfig(
        device=device,
        ddp_enabled=section.get("ddp_enabled", bool, default=False),
        use_mixed_precision=section.get("use_mixed_precision", bool, default=False),
        num_threads=num_threads,
    )


def _parse_data(section: _Section, run_seed: int) -> DataConfig:
    dataset = section.get("dataset", str, default="sklearn_digits")
    if dataset != "sklearn_digits":
        raise ConfigError(f"{section.path('dataset')} must be 'sklearn_digits', but got {dataset!r}")
    positive_digit = section.get("positive_digit", int, default=9)
    if not 0 <= positive_digit <= 9:
        raise ConfigError(f"{section.path('positive_digit')} must be a digit from 0 to 9, but got {positive_digit}")
    val_fraction = section.get("val_fraction", float, default=0.2)
    test_fraction = section.get("test_fraction", float, default=0.2)
    for key, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 0.5:
            raise ConfigError(f"{section.path(key)} must be between 0 and 0.5, but got {fraction}")
    max_train_samples = section.get("max_train_samples", int, default=None)
    if max_train_samples is not None:
        _check_at_least(section, "max_train_samples", max_train_samples, 10)
    dataloader = section.child("dataloader")
    return DataConfig(
        positive_digit=positive_digit,
        split_seed=section.get("split_seed", int, default=run_seed),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_train_samples=max_train_samples,
        num_workers=dataloader.get("num_workers", int, default=0),
        drop_last=dataloader.get("drop_last", bool, default=False),
    )


def _parse_model(section: _Section) -> ModelConfig:
    model = section.get("model", str)
    if model not in SUPPORTED_MODELS:
        raise ConfigError(f"{section.path('model')} must be one of {list(SUPPORTED_MODELS)}, but got {model!r}")

    sizes = {key: section.get(key, int) for key in ("d_model", "encoder_layers", "cross_attn_layers", "n_heads")}
    for key, size in sizes.items():
        _check_at_least(section, key, size, 1)
    if sizes["d_model"] % sizes["n_heads"] != 0:
        raise ConfigError(
            f"{section.path('n_heads')} must divide model_config.d_model, but got n_heads={sizes['n_heads']} "
            f"and d_model={sizes['d_model']}; choose for example 8 heads for d_model 128, 192 or 256"
        )
    ffn_multiplier = section.get("ffn_multiplier", int, default=2)
    _check_at_least(section, "ffn_multiplier", ffn_multiplier, 1)

    regularization = section.child("regularization")
    head = section.child("mlp_head")
    hidden_dims = head.get("hidden_dims", list, default=[64])
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in hidden_dims):
        raise ConfigError(f"{head.path('hidden_dims')} must be a list of positive ints, but got {hidden_dims!r}")

    return ModelConfig(
        model=model,
        d_model=sizes["d_model"],
        encoder_layers=sizes["encoder_layers"],
        cross_attn_layers=sizes["cross_attn_layers"],
        n_heads=sizes["n_heads"],
        ffn_multiplier=ffn_multiplier,
        dropout=_probability(regularization, "dropout", 0.1),
        cross_attention_dropout=_probability(regularization, "cross_attention_dropout", 0.1),
        head_hidden_dims=tuple(hidden_dims),
        head_dropout=_probability(head, "dropout", 0.1),
    )


def _parse_training(section: _Section) -> TrainingConfig:
    epochs = section.get("epochs", int)
    _check_at_least(section, "epochs", epochs, 1)
    batch_size = section.get("batch_size", int)
    _check_at_least(section, "batch_size", batch_size, 1)
    patience = section.get("early_stopping_patience", int, default=None)
    if patience is not None:
        _check_at_least(section, "early_stopping_patience", patience, 1)

    logging_section = section.child("logging")
    validation_metrics = _parse_metric_list(logging_section, "validation_metrics", default=["auprc", "auroc"])
    log_every = logging_section.get("log_every_n_steps", int, default=10)
    _check_at_least(logging_section, "log_every_n_steps", log_every, 1)

    monitor = section.get("monitor_metric", str, default=validation_metrics[0]).lower().removeprefix("val_")
    if monitor != "loss" and monitor not in validation_metrics:
        raise ConfigError(
            f"{section.path('monitor_metric')} must be 'loss' or one of "
            f"training_config.logging.validation_metrics {list(validation_metrics)}, but got {monitor!r}"
        )

    optimizer = section.child("optimizer")
    optimizer_type = optimizer.get("type", str, default="adamw")
    if optimizer_type.lower() != "adamw":
        raise ConfigError(f"{optimizer.path('type')} must be 'adamw', but got {optimizer_type!r}")
    lr = optimizer.get("lr", float)
    if lr <= 0:
        raise ConfigError(f"{optimizer.path('lr')} must be positive, but got {lr}")
    weight_decay = optimizer.get("weight_decay", float, default=0.01)
    if weight_decay < 0:
        raise ConfigError(f"{optimizer.path('weight_decay')} must be at least 0, but got {weight_decay}")

    loss = section.child("loss")
    loss_type = loss.get("type", str, default="bce_with_logits")
    if loss_type != "bce_with_logits":
        raise ConfigError(f"{loss.path('type')} must be 'bce_with_logits', but got {loss_type!r}")
    pos_weight = loss.get("pos_weight", float, default=None)
    if pos_weight is not None and pos_weight <= 0:
        raise ConfigError(f"{loss.path('pos_weight')} must be positive or null, but got {pos_weight}")
    grad_clip_norm = section.get("grad_clip_norm", float, default=None)
    if grad_clip_norm is not None and grad_clip_norm <= 0:
        raise ConfigError(f"{section.path('grad_clip_norm')} must be positive or null, but got {grad_clip_norm}")

    return TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        early_stopping_patience=patience,
        monitor_metric=monitor,
        validation_metrics=validation_metrics,
        log_every_n_steps=log_every,
        lr=lr,
        weight_decay=weight_decay,
        betas=(optimizer.get("beta1", float, default=0.9), optimizer.get("beta2", float, default=0.999)),
        eps=optimizer.get("eps", float, default=1.0e-8),
        scheduler=_parse_scheduler(section.child("scheduler")),
        pos_weight=pos_weight,
        grad_clip_norm=grad_clip_norm,
    )


def _parse_scheduler(section: _Section) -> SchedulerConfig:
    scheduler_type = section.get("type", str, default="none")
    if scheduler_type not in SCHEDULERS:
        raise ConfigError(f"{section.path('type')} must be one of {list(SCHEDULERS)}, but got {scheduler_type!r}")
    anneal_strategy = section.get("anneal_strategy", str, default="cos")
    if anneal_strategy not in ("cos", "linear"):
        raise ConfigError(f"{section.path('anneal_strategy')} must be 'cos' or 'linear', but got {anneal_strategy!r}")
    return SchedulerConfig(
        type=scheduler_type,
        max_lr=section.get("max_lr", float, default=None),
        pct_start=_probability(section, "pct_start", 0.2),
        div_factor=section.get("div_factor", float, default=25.0),
        final_div_factor=section.get("final_div_factor", float, default=1.0e4),
        anneal_strategy=anneal_strategy,
        eta_min=section.get("eta_min", float, default=0.0),
    )


def _parse_metric_list(section: _Section, key: str, default: list[str]) -> tuple[str, ...]:
    metrics = section.get(key, list, default=default)
    if not metrics:
        raise ConfigError(f"{section.path(key)} must list at least one metric, but got an empty list")
    names = []
    for metric in metrics:
        if not isinstance(metric, str) or metric.lower() not in SUPPORTED_METRICS:
            raise ConfigError(
                f"{section.path(key)} contains {metric!r}, which is not a supported metric; use any of {sorted(SUPPORTED_METRICS)}"
            )
        names.append(metric.lower())
    if len(set(names)) != len(names):
        raise ConfigError(f"{section.path(key)} must not repeat a metric, but got {metrics}")
    return tuple(names)


def _probability(section: _Section, key: str, default: float) -> float:
    value = section.get(key, float, default=default)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{section.path(key)} must be at least 0 and below 1, but got {value}")
    return value


def _check_at_least(section: _Section, key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{section.path(key)} must be at least {minimum}, but got {value}")


def _section(raw: dict[str, Any], name: str, required: bool = True) -> _Section:
    if name not in raw or raw[name] is None:
        if required:
            raise ConfigError(f"section {name} is missing from the config")
        return _Section(name, {})
    if not isinstance(raw[name], dict):
        raise ConfigError(f"section {name} must be a mapping, but got {type(raw[name]).__name__}")
    return _Section(name, raw[name])


class _Section:
    """A mapping from the YAML with its dot path, for typed reads and error messages."""

    def __init__(self, dot_path: str, values: dict[str, Any]):
        self._dot_path = dot_path
        self._values = values

    def path(self, key: str) -> str:
        return f"{self._dot_path}.{key}"

    def child(self, key: str) -> _Section:
        value = self._values.get(key)
        if value is None:
            return _Section(self.path(key), {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path(key)} must be a mapping, but got {value!r}")
        return _Section(self.path(key), value)

    def get(self, key: str, expected: type, default: Any = _REQUIRED) -> Any:
        """Return the value at ``key`` converted to ``expected``; null or absent gives ``default``."""
        value = self._values.get(key)
        if value is None:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path(key)} is missing; set it to a {expected.__name__}")
            return default
        # YAML reads 1e-4 without a dot as a string, and users write 1 for 1.0.
        if expected is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
        # bool is a subclass of int in Python, but `epochs: true` is a mistake.
        if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
            raise ConfigError(f"{self.path(key)} must be a {expected.__name__}, but got {value!r}")
        return value
