"""Fake training pipeline: ``python -m src.run --config <file.yaml>`` from ``test/fake-pipeline/``.

It writes what a real pipeline run writes (``training_step.csv``, ``log.log``, progress lines
on stdout, ``best_model.pth`` and, for evaluation, ``metrics.json``) without training anything.
Tests steer it through the ``fake_pipeline`` section of the config:

    fake_pipeline:
      epoch_seconds: 0.2                 # sleep per epoch
      quality_path: model_config.quality # dot path of the quality (default 0.5)
      script_file: null                  # JSON file {"<run_id>": behaviour, "*": behaviour}

The value of epoch k (1-based) is ``quality * k / epochs``. Behaviour keys may appear in the
section itself and in the script file. The script entry for the run id, or else its ``"*"``
entry, is merged over the section's keys. The script file is read once, when the run starts.

Behaviour keys:
    values: per-epoch values; "nan", "inf" and "-inf" are written as such. A list shorter than
        ``epochs`` ends training early, like early stopping.
    oom_at_epoch: raise a CUDA-style ``torch.OutOfMemoryError`` before writing that epoch.
    crash_at_epoch, exit_code: print a RuntimeError traceback and exit with exit_code (1).
    hang_at_epoch: write nothing more and sleep until killed.
    sigkill_self_at_epoch: kill itself with SIGKILL, as the kernel's OOM killer would.
    duplicate_epoch: write that epoch's row twice; the second copy has value + 0.25.
    no_newline_at_end: write the last row without a line end.
    bom, crlf: start the CSV with a UTF-8 byte-order mark, end lines with CRLF.
    missing_objective: leave the ``Val auprc`` column out (or ``Val <name>`` when a string).
    delay_file_seconds: create the CSV only after this many seconds.
    no_file: never create the CSV.
    ignore_sigterm: print a line and carry on when SIGTERM arrives.
    spawn_child: start a ``sleep 1000`` child in the same process group and print its pid.
    touch_file_on_start: append ``<run_id> <pid>`` to this file at start.
    epoch_seconds: overrides the section's value.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime
from typing import Any

import yaml

LOG_EVERY_STEPS = 400
STEPS_PER_EPOCH = 1200


class OutOfMemoryError(RuntimeError):
    """Stand-in for torch.OutOfMemoryError, which tracebacks print as ``torch.OutOfMemoryError``."""


OutOfMemoryError.__module__ = "torch"


def get_path(config: dict[str, Any], dot_path: str, default: Any) -> Any:
    node: Any = config
    for key in dot_path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def timestamp_id() -> str:
    return datetime.now().strftime("%Y%m%d_%H%M%S")


def load_behaviour(section: dict[str, Any], run_id: str) -> dict[str, Any]:
    behaviour = {key: value for key, value in section.items() if key not in ("quality_path", "script_file")}
    script_file = section.get("script_file")
    if script_file:
        with open(script_file, encoding="utf-8") as handle:
            script = json.load(handle)
        entry = script.get(run_id, script.get("*", {}))
        behaviour.update(entry)
    return behaviour


def format_value(value: Any) -> str:
    """Write a value the way Python's csv module writes floats, keeping nan and inf spellings."""
    if isinstance(value, str):
        return value
    return repr(float(value))


class Progress:
    """Progress lines, written to stdout and to log.log and flushed at once for readers tailing them."""

    def __init__(self, log_path: str):
        self.log_file = open(log_path, "a", encoding="utf-8")

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.log_file.write(text + "\n")
        self.log_file.flush()


def raise_out_of_memory() -> None:
    raise OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
        "of which 1.31 GiB is free. Process 4242 has 77.86 GiB memory in use. Of the allocated "
        "memory 74.02 GiB is allocated by PyTorch, and 2.40 GiB is reserved by PyTorch but "
        "unallocated. If reserved but unallocated memory is large try setting "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation."
    )


def forward_pass(epoch: int, behaviour: dict[str, Any]) -> None:
    """Raise the configured training error at its epoch, from a nested call for a real traceback."""
    if behaviour.get("oom_at_epoch") == epoch:
        raise_out_of_memory()
    if behaviour.get("crash_at_epoch") == epoch:
        raise RuntimeError(f"fake pipeline crashed at epoch {epoch}: expected all tensors on the same device")


def read_quality(config: dict[str, Any]) -> float:
    quality_path = get_path(config, "fake_pipeline.quality_path", None) or "model_config.quality"
    return float(get_path(config, quality_path, 0.5))


def read_metrics(config: dict[str, Any]) -> list[str]:
    return list(get_path(config, "training_config.logging.validation_metrics", None) or ["auprc"])


def train(config: dict[str, Any], behaviour: dict[str, Any], model: str, run_id: str) -> float | None:
    """Run the fake epochs, writing the training outputs, and return the best value written."""
    epochs = int(get_path(config, "training_config.epochs", 3))
    metrics = read_metrics(config)
    quality = read_quality(config)
    epoch_seconds = float(behaviour.get("epoch_seconds", 0.2))

    values: list[Any] = behaviour.get("values") or [quality * k / epochs for k in range(1, epochs + 1)]
    values = values[:epochs]

    missing = behaviour.get("missing_objective")
    if missing:
        dropped = missing if isinstance(missing, str) else "auprc"
        metrics = [name for name in metrics if name != dropped]

    log_dir = os.path.join("logs", model, "train", run_id)
    model_dir = os.path.join("models", model, "train", run_id)
    os.makedirs(log_dir, exist_ok=True)
    os.makedirs(model_dir, exist_ok=True)
    progress = Progress(os.path.join(log_dir, "log.log"))
    progress.line(f"Training {model} run {run_id}: {len(values)} epochs, metrics {metrics}")

    line_end = "\r\n" if behaviour.get("crlf") else "\n"
    header = ["Epoch", "Epoch Time", "Train Loss", "Val Loss"] + [f"Val {name}" for name in metrics] + ["Learning Rate"]
    csv_path = os.path.join(log_dir, "training_step.csv")
    csv_file = None
    file_due_at = time.monotonic() + float(behaviour.get("delay_file_seconds", 0))

    def open_csv() -> Any:
        handle = open(csv_path, "w", encoding="utf-8", newline="")
        if behaviour.get("bom"):
            handle.write("\ufeff")
        handle.write(",".join(header) + line_end)
        handle.flush()
        return handle

    def write_row(epoch: int, value: Any, seconds: float, last: bool) -> None:
        number = float(value)  # float() accepts the strings "nan", "inf" and "-inf"
        loss = 1.0 - number if math.isfinite(number) else number
        cells = [str(epoch), repr(seconds), repr(loss + 0.1), format_value(loss)]
        cells += [format_value(value)] * len(metrics)
        cells.append(repr(1e-4))
        end = "" if last and behaviour.get("no_newline_at_end") else line_end
        csv_file.write(",".join(cells) + end)
        csv_file.flush()

    best: float | None = None
    for epoch, value in enumerate(values, start=1):
        started = time.monotonic()
        if behaviour.get("hang_at_epoch") == epoch:
            while True:
                time.sleep(3600)
        if behaviour.get("sigkill_self_at_epoch") == epoch:
            os.kill(os.getpid(), signal.SIGKILL)
        forward_pass(epoch, behaviour)

        for step in range(LOG_EVERY_STEPS, STEPS_PER_EPOCH + 1, LOG_EVERY_STEPS):
            time.sleep(epoch_seconds * LOG_EVERY_STEPS / STEPS_PER_EPOCH)
            progress.line(f"Epoch {epoch} | Step {step}/{STEPS_PER_EPOCH} | Loss {0.7 / epoch:.4f} | LR 1.0000e-04")

        if csv_file is None and not behaviour.get("no_file"):
            remaining = file_due_at - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            csv_file = open_csv()
        if csv_file is not None:
            last = epoch == len(values)
            write_row(epoch, value, time.monotonic() - started, last and behaviour.get("duplicate_epoch") != epoch)
            if behaviour.get("duplicate_epoch") == epoch:
                write_row(epoch, float(value) + 0.25, time.monotonic() - started, last)

        number = float(value)
        if not math.isnan(number) and (best is None or number > best):
            best = number
            with open(os.path.join(model_dir, "best_model.pth"), "wb") as checkpoint:
                checkpoint.write(f"fake checkpoint, epoch {epoch}\n".encode())
        progress.line(f"Epoch {epoch} done | Val {metrics[0] if metrics else 'none'} {format_value(value)}")

    if csv_file is not None:
        csv_file.close()
    return best


def evaluate(config: dict[str, Any], model: str, eval_run_id: str, best: float | None) -> None:
    value = best if best is not None else read_quality(config)
    metrics = read_metrics(config)
    eval_dir = os.path.join("logs", model, "eval", eval_run_id)
    os.makedirs(eval_dir, exist_ok=True)
    with open(os.path.join(eval_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump({name: value for name in metrics}, handle)
    print(f"Evaluation {eval_run_id} written", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Fake training pipeline for orchestrator tests.")
    parser.add_argument("--config", required=True, help="path of the run's YAML config")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}

    model = str(get_path(config, "model_config.model", None) or "fake")
    mode = str(get_path(config, "run_config.mode", None) or "train_only")
    run_id = str(get_path(config, "run_config.train_run_id", None) or timestamp_id())
    eval_run_id = str(get_path(config, "run_config.eval_run_id", None) or timestamp_id())
    section = get_path(config, "fake_pipeline", None) or {}
    behaviour = load_behaviour(section, run_id)

    touch_path = behaviour.get("touch_file_on_start")
    if touch_path:
        with open(touch_path, "a", encoding="utf-8") as handle:
            handle.write(f"{run_id} {os.getpid()}\n")
    if behaviour.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, lambda signum, frame: print("SIGTERM received and ignored", flush=True))
    child = None
    if behaviour.get("spawn_child"):
        child = subprocess.Popen(["sleep", "1000"])
        print(f"spawned child pid {child.pid}", flush=True)
    try:
        return run_mode(config, behaviour, model, mode, run_id, eval_run_id)
    finally:
        # The child outlives this process only when a signal ends it, which the process-group tests rely on.
        if child is not None:
            child.kill()
            child.wait()


def run_mode(config: dict[str, Any], behaviour: dict[str, Any], model: str, mode: str, run_id: str, eval_run_id: str) -> int:
    if mode not in ("train_only", "full_pipeline", "eval_only"):
        print(f"invalid run_config.mode {mode!r}: expected train_only, full_pipeline or eval_only", file=sys.stderr)
        return 2

    best = None
    if mode in ("train_only", "full_pipeline"):
        try:
            best = train(config, behaviour, model, run_id)
        except RuntimeError as error:
            if isinstance(error, OutOfMemoryError) or behaviour.get("crash_at_epoch") is None:
                raise
            traceback.print_exc()
            return int(behaviour.get("exit_code", 1))
    if mode in ("full_pipeline", "eval_only"):
        evaluate(config, model, eval_run_id, best)
    print("Done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
