"""Process setup shared by training and evaluation: seeding, device, logging, DDP."""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from src.config import DeviceConfig

LOGGER_NAME = "relic_mini"


@dataclass(frozen=True)
class Runtime:
    """The device and the process's place in a DistributedDataParallel group."""

    device: torch.device
    distributed: bool
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs, CSV rows, checkpoints and metrics."""
        return self.rank == 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_runtime(config: DeviceConfig, logger: logging.Logger) -> Runtime:
    """Set the thread count, pick the device and join the DDP group when torchrun started us.

    ``ddp_enabled`` without the torchrun variables (``WORLD_SIZE`` > 1) runs one process.
    """
    torch.set_num_threads(config.num_threads)

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = config.ddp_enabled and world_size > 1
    if config.ddp_enabled and not distributed:
        logger.info("ddp_enabled is true but torchrun set no WORLD_SIZE > 1; running as a single process")
    if not config.ddp_enabled and world_size > 1:
        raise RuntimeError(
            f"torchrun started {world_size} processes but device_config.ddp_enabled is false; "
            "set it to true or start the pipeline with python -m src.run"
        )

    # NOTE: only the CPU paths (one process, and gloo under torchrun) have been run; the
    # CUDA paths (NCCL, bf16 autocast) are untested.
    device = _select_device(config.device)
    rank = 0
    if distributed:
        local_rank = int(os.environ["LOCAL_RANK"])
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        logger.info("DDP group joined: rank %d of %d on %s", rank, world_size, device)
    else:
        world_size = 1

    if config.use_mixed_precision and device.type != "cuda":
        logger.info("use_mixed_precision applies to CUDA only; running in float32 on %s", device)
    return Runtime(device=device, distributed=distributed, rank=rank, world_size=world_size)


def shutdown_runtime(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.destroy_process_group()


def _select_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device_config.device is 'cuda' but PyTorch finds no CUDA device; set it to 'cpu' or 'auto'")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def create_logger() -> logging.Logger:
    """Return the pipeline logger, which writes bare messages to stdout.

    The HPO orchestrator reads stdout while a trial runs, so each line is flushed at once,
    which logging.StreamHandler does after every record.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


class RunLogFile:
    """Copies the logger's records into ``<run_dir>/log.log`` while the ``with`` block runs."""

    def __init__(self, logger: logging.Logger, run_dir: Path):
        self._logger = logger
        self._handler = logging.FileHandler(run_dir / "log.log", mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def __enter__(self) -> RunLogFile:
        self._logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
