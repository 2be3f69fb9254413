/**
 * The invariant every study test checks at its end: the study reached its trial count, trial
 * numbers are unique, nothing is RUNNING in the Optuna storage, trials.csv matches the storage
 * state for state and value, and no finished trial's pipeline ran again after it finished.
 */
import assert from 'node:assert/strict';
import type { StudyResult } from '../../src/workflows/study';
import { readOptunaStudy, readTrialsCsv, type FakeStudy, type StoredTrial } from './fakeStudy';

export interface InvariantOptions {
  /** Trials that must count toward the budget; default: the study's nTrials. */
  expectedCounted?: number;
}

export function assertStudyInvariants(study: FakeStudy, result: StudyResult, options: InvariantOptions = {}): StoredTrial[] {
  const stored = readOptunaStudy(study.spec, result.studyName);

  // The study reached its trial count (interrupted trials re-run and do not count).
  const counted = stored.filter((t) => t.state !== 'RUNNING' && t.state !== 'WAITING' && !t.userAttrs['hpo:interrupted']);
  assert.equal(counted.length, options.expectedCounted ?? study.spec.nTrials, 'trials counted toward the budget');
  assert.equal(result.counted, counted.length, 'the workflow counted what the storage holds');

  assert.equal(new Set(stored.map((t) => t.number)).size, stored.length, 'trial numbers are unique');
  assert.deepEqual(stored.filter((t) => t.state === 'RUNNING').map((t) => t.number), [], 'no trial is left RUNNING');

  const csv = readTrialsCsv(result.trialsCsv);
  assert.equal(csv.length, stored.filter((t) => t.state !== 'WAITING').length, 'one trials.csv row per trial');
  for (const row of csv) {
    const trial = stored.find((t) => t.number === Number(row.trial_number));
    assert.ok(trial, `trials.csv row ${row.trial_number} is in the storage`);
    assert.equal(row.state, trial.state, `state of trial ${trial.number}`);
    const expected = typeof trial.value === 'number' ? trial.value.toFixed(8) : '';
    assert.equal(row.value, expected, `value of trial ${trial.number}`);
    const params = JSON.parse(row.params_json) as Record<string, unknown>;
    assert.deepEqual(params, trial.params, `params of trial ${trial.number}`);
    assert.deepEqual(Object.keys(params), Object.keys(params).sort(), 'params_json has sorted keys');
  }

  // A pipeline run starts once per attempt: more starts than recorded attempts means a trial
  // ran again after it had finished.
  const starts = new Map<string, number>();
  for (const run of study.runs()) starts.set(run.runId, (starts.get(run.runId) ?? 0) + 1);
  for (const trial of stored) {
    const runId = trial.userAttrs['hpo:run_id'] as string | undefined;
    if (!runId || trial.state === 'RUNNING') continue;
    const attempts = Number(trial.userAttrs['hpo:attempts'] ?? 0);
    assert.ok((starts.get(runId) ?? 0) <= Math.max(attempts, 1), `trial ${trial.number} started ${starts.get(runId)} times for ${attempts} attempts`);
  }
  return stored;
}
