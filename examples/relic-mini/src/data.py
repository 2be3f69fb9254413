"""The digits task: scikit-learn's bundled copy of the UCI optical recognition of handwritten
digits data set (1797 images of 8x8 pixels), as "one digit against the rest".

With one positive digit, about 10 % of the samples are positive, so AUPRC separates good
models from ones that only learn the majority class. No file is downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from src.config import DataConfig

# Pixel values in the data set are counts from 0 to 16.
_MAX_PIXEL_VALUE = 16.0


@dataclass(frozen=True)
class DigitSplits:
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset

    def describe(self) -> str:
        parts = []
        for name, dataset in (("train", self.train), ("val", self.val), ("test", self.test)):
            labels = dataset.tensors[1]
            parts.append(f"{name} {len(labels)} ({int(labels.sum())} positive)")
        return ", ".join(parts)


def load_digit_splits(config: DataConfig) -> DigitSplits:
    """Split the digits into stratified train, validation and test sets.

    The split depends only on ``config.split_seed``, so every trial of a study uses the same
    validation set. Images are float32 tensors of shape (8, 8) scaled to [0, 1], labels are
    float32 0/1 with 1 for ``config.positive_digit``.
    """
    digits = load_digits()
    images = (digits.images / _MAX_PIXEL_VALUE).astype(np.float32)
    labels = (digits.target == config.positive_digit).astype(np.float32)

    holdout_fraction = config.val_fraction + config.test_fraction
    train_x, holdout_x, train_y, holdout_y = train_test_split(
        images, labels, test_size=holdout_fraction, stratify=labels, random_state=config.split_seed
    )
    val_x, test_x, val_y, test_y = train_test_split(
        holdout_x,
        holdout_y,
        test_size=config.test_fraction / holdout_fraction,
        stratify=holdout_y,
        random_state=config.split_seed,
    )
    if config.max_train_samples is not None and config.max_train_samples < len(train_y):
        train_x, _, train_y, _ = train_test_split(
            train_x, train_y, train_size=config.max_train_samples, stratify=train_y, random_state=config.split_seed
        )

    return DigitSplits(
        train=_to_dataset(train_x, train_y),
        val=_to_dataset(val_x, val_y),
        test=_to_dataset(test_x, test_y),
    )


def _to_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
