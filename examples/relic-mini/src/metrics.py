"""Binary classification metrics by their config names, computed with scikit-learn."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from sklearn import metrics as sk_metrics

# Threshold-based metrics count a sample as positive when its predicted probability is at
# least this value.
DECISION_THRESHOLD = 0.5


def _specificity(labels: np.ndarray, predicted: np.ndarray) -> float:
    negatives = labels == 0
    if not negatives.any():
        return 0.0
    return float((predicted[negatives] == 0).mean())


# Each function takes (labels, probabilities, predicted labels) as numpy arrays.
_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "auprc": lambda y, p, _: sk_metrics.average_precision_score(y, p),
    "auroc": lambda y, p, _: sk_metrics.roc_auc_score(y, p),
    "f1": lambda y, _, y_hat: sk_metrics.f1_score(y, y_hat, zero_division=0),
    "accuracy": lambda y, _, y_hat: sk_metrics.accuracy_score(y, y_hat),
    "precision": lambda y, _, y_hat: sk_metrics.precision_score(y, y_hat, zero_division=0),
    "recall": lambda y, _, y_hat: sk_metrics.recall_score(y, y_hat, zero_division=0),
    "sensitivity": lambda y, _, y_hat: sk_metrics.recall_score(y, y_hat, zero_division=0),
    "specificity": lambda y, _, y_hat: _specificity(y, y_hat),
    "mcc": lambda y, _, y_hat: sk_metrics.matthews_corrcoef(y, y_hat),
}

SUPPORTED_METRICS = frozenset(_METRIC_FUNCTIONS)


def compute_metrics(names: Iterable[str], labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Return each named metric of the probabilities against the 0/1 labels, in the order given.

    AUPRC is scikit-learn's average precision. AUROC needs both classes among the labels,
    which the stratified split guarantees.
    """
    predicted = (probabilities >= DECISION_THRESHOLD).astype(np.int64)
    return {name: float(_METRIC_FUNCTIONS[name](labels, probabilities, predicted)) for name in names}
