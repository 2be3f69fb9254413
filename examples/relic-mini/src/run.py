"""Entry point: ``python -m src.run --config <file.yaml>`` from the pipeline root.

Multi-process training uses ``torchrun --standalone --nproc_per_node=<N> --module src.run
--config <file.yaml>`` with ``device_config.ddp_enabled: true``. Errors are not caught, so
any failure, CUDA out of memory included, prints its traceback and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from src.config import PipelineConfig, load_config
from src.data import load_digit_splits
from src.evaluate import evaluate
from src.runtime import Runtime, create_logger, seed_everything, setup_runtime, shutdown_runtime
from src.train import train, train_run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train and evaluate the relic-mini digits pipeline.")
    parser.add_argument("--config", required=True, help="path of the pipeline's YAML config")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    logger = create_logger()
    runtime = setup_runtime(config.device, logger)
    if not runtime.is_main:
        logger.setLevel(logging.WARNING)
    try:
        run_pipeline(config, runtime, logger)
    finally:
        shutdown_runtime(runtime)


def run_pipeline(config: PipelineConfig, runtime: Runtime, logger: logging.Logger) -> None:
    seed_everything(config.run.seed)
    splits = load_digit_splits(config.data)
    logger.info(
        "Mode %s | train run %s | eval run %s | digit %d against the rest | %s",
        config.run.mode, config.run.train_run_id, config.run.eval_run_id, config.data.positive_digit, splits.describe(),
    )

    if config.run.mode in ("full_pipeline", "train_only"):
        checkpoint_path = train(config, splits.train, splits.val, runtime, logger)
    elif config.run.load_checkpoint_path:
        checkpoint_path = Path(config.run.load_checkpoint_path)
    else:
        checkpoint_path = train_run_dir(config, "models") / "best_model.pth"

    if config.run.mode in ("full_pipeline", "eval_only") and runtime.is_main:
        evaluate(config, checkpoint_path, splits.test, runtime, logger)


if __name__ == "__main__":
    main()
