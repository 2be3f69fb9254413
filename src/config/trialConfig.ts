/**
 * The pipeline config of one trial and of the final full-pipeline run. Pure functions of the
 * StudySpec, so they can run in an activity or in workflow code alike.
 */
import type { SearchParam, StudySpec } from '../common/types';
import { assignPath, deepCopy, isMapping } from './dotpath';

/** Returns the run id of a trial: `<prefix>_t<number>`, the number zero-padded to four digits. */
export function trialRunId(prefix: string, trialNumber: number): string {
  if (prefix === '') throw new Error('Invalid run id prefix "": expected a non-empty prefix.');
  if (!Number.isSafeInteger(trialNumber) || trialNumber < 0) {
    throw new RangeError(`Invalid trial number ${trialNumber}: expected an integer of 0 or more.`);
  }
  return `${prefix}_t${String(trialNumber).padStart(4, '0')}`;
}

/** Returns the default run id prefix: the study's start time as `YYYYMMDD_HHMMSS`, in UTC so every machine agrees. */
export function defaultRunIdPrefix(now: Date): string {
  const pad = (value: number): string => String(value).padStart(2, '0');
  const date = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}`;
  const time = `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`;
  return `${date}_${time}`;
}

/**
 * Builds the config of trial `trialNumber`: the base config with each sampled value at its path,
 * the trial mode, the trial's run id and, unless the study runs DDP per trial, `ddp_enabled: false`.
 */
export function buildTrialConfig(
  spec: StudySpec,
  params: Record<string, unknown>,
  trialNumber: number,
): { config: Record<string, unknown>; runId: string } {
  const runId = trialRunId(spec.runIdPrefix, trialNumber);
  const config = configWithParams(spec.baseConfig, spec.searchSpace, params);

  const runConfig = sectionOf(config, 'run_config');
  runConfig.mode = spec.execution.trialMode;
  runConfig.train_run_id = runId;
  if (!spec.execution.ddpPerTrial) sectionOf(config, 'device_config').ddp_enabled = false;

  return { config, runId };
}

/** Builds the config of the full-pipeline run with the best parameters. DDP stays as the user configured it. */
export function buildFinalConfig(
  spec: StudySpec,
  bestParams: Record<string, unknown>,
): { config: Record<string, unknown>; trainRunId: string; evalRunId: string } {
  const trainRunId = `${spec.runIdPrefix}_best_train`;
  const evalRunId = `${spec.runIdPrefix}_best_eval`;
  const config = configWithParams(spec.baseConfig, spec.searchSpace, bestParams);

  const runConfig = sectionOf(config, 'run_config');
  runConfig.mode = 'full_pipeline';
  runConfig.train_run_id = trainRunId;
  runConfig.eval_run_id = evalRunId;

  return { config, trainRunId, evalRunId };
}

/** Returns a deep copy of `baseConfig` with each parameter's value set at its path. `params` must name exactly the search-space parameters. */
function configWithParams(
  baseConfig: Record<string, unknown>,
  space: SearchParam[],
  params: Record<string, unknown>,
): Record<string, unknown> {
  const unknown = Object.keys(params).filter((name) => !space.some((param) => param.name === name));
  if (unknown.length > 0) {
    throw new Error(`Parameters ${unknown.join(', ')} are not in the study's search space (${space.map((p) => p.name).join(', ')}).`);
  }

  const config = deepCopy(baseConfig);
  for (const param of space) {
    if (!Object.hasOwn(params, param.name)) {
      throw new Error(`Parameter "${param.name}" has no value, but every search-space parameter needs one to build a config.`);
    }
    assignPath(config, param.path, deepCopy(params[param.name]));
  }
  return config;
}

/** Returns the mapping at top-level key `key` of `config`, creating it when the base config has none. */
function sectionOf(config: Record<string, unknown>, key: string): Record<string, unknown> {
  const section = config[key];
  if (isMapping(section)) return section;
  if (section !== undefined && section !== null) {
    throw new Error(`Config section ${key} must be a mapping, but it is ${Array.isArray(section) ? 'a list' : typeof section}.`);
  }
  const created: Record<string, unknown> = {};
  config[key] = created;
  return created;
}
