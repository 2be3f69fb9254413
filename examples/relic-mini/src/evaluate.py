"""Evaluation of a checkpoint on the test split, written to ``metrics.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

from src.config import ModelConfig, PipelineConfig
from src.metrics import compute_metrics
from src.model import build_model
from src.runtime import RunLogFile, Runtime
from src.train import load_checkpoint, predict


def evaluate(config: PipelineConfig, checkpoint_path: Path, test_set: TensorDataset, runtime: Runtime, logger: logging.Logger) -> dict[str, float]:
    """Compute ``evaluate.metrics`` of the checkpoint on ``test_set``, log them and return them.

    The model is rebuilt from the model config stored in the checkpoint when it has one, so
    a checkpoint evaluates correctly even if the YAML's architecture differs.
    Writes ``logs/<model>/eval/<eval_run_id>/metrics.json``.
    """
    eval_dir = Path("logs") / config.model.model / "eval" / config.run.eval_run_id
    eval_dir.mkdir(parents=True, exist_ok=True)

    with RunLogFile(logger, eval_dir):
        checkpoint = load_checkpoint(checkpoint_path, runtime.device)
        model_config = ModelConfig.from_dict(checkpoint["model_config"]) if "model_config" in checkpoint else config.model
        with runtime.device:
            model = build_model(model_config)
        model.load_state_dict(checkpoint["model_state_dict"])
        logger.info("Evaluating %s (epoch %s) on %d test samples", checkpoint_path, checkpoint.get("epoch", "unknown"), len(test_set))

        probabilities, labels, _ = predict(model, test_set, config.training.batch_size, runtime.device, nn.BCEWithLogitsLoss())
        metrics = compute_metrics(config.eval_metrics, labels, probabilities)

        metrics_path = eval_dir / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        for name, value in metrics.items():
            logger.info("Test %s %.4f", name, value)
        logger.info("Metrics written to %s", metrics_path)
    return metrics
