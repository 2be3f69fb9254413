/**
 * The objective metric: which column of the pipeline's `training_step.csv` a trial is scored on.
 * The pipeline writes one `Val <metric>` column per entry of
 * `training_config.logging.validation_metrics`, in lower case.
 */
import { getPath, hasPath } from './dotpath';
import { describeValue, type RawIssue } from './schema';

const VALIDATION_METRICS_PATH = 'training_config.logging.validation_metrics';
const METRIC_PATTERN = /^[a-z0-9][a-z0-9_-]*$/;

/** Returns the metric name as the pipeline logs it: `val_AUPRC` and `auprc` both give `auprc`. */
export function metricName(metric: string): string {
  return metric.replace(/^val_/i, '').toLowerCase();
}

/** Returns the CSV column of a metric, such as `Val auprc` for `val_auprc`. Throws when no valid metric name remains. */
export function objectiveColumnFor(metric: string): string {
  const name = metricName(metric);
  if (!METRIC_PATTERN.test(name)) {
    throw new Error(`Invalid objective metric ${JSON.stringify(metric)}: expected a metric name such as "val_auprc" or "auprc".`);
  }
  return `Val ${name}`;
}

/** Checks the objective metric against the metrics the pipeline logs, when the config lists them. */
export function checkObjectiveMetric(metric: unknown, document: Record<string, unknown>): RawIssue[] {
  if (typeof metric !== 'string') return [];
  const at = ['optimization', 'objective_metric'];

  const name = metricName(metric);
  if (!METRIC_PATTERN.test(name)) {
    return [{
      path: at,
      message: `must name a validation metric such as "val_auprc" or "auprc", but got ${describeValue(metric)}. Use letters, digits, "_" or "-".`,
    }];
  }
  if (!hasPath(document, VALIDATION_METRICS_PATH)) return [];

  const logged = getPath(document, VALIDATION_METRICS_PATH);
  if (!Array.isArray(logged) || !logged.every((entry) => typeof entry === 'string')) {
    return [{
      path: VALIDATION_METRICS_PATH.split('.'),
      message: `must be a list of metric names such as ["auprc", "auroc"], but got ${describeValue(logged)}. The objective column is looked up in it.`,
    }];
  }

  const names = logged.map((entry) => entry.toLowerCase());
  if (names.includes(name)) return [];
  return [{
    path: at,
    message:
      `must be one of the metrics the pipeline logs (${names.join(', ') || 'none'}), but got ${describeValue(metric)}. ` +
      `Choose one of them or add "${name}" to ${VALIDATION_METRICS_PATH}.`,
  }];
}
