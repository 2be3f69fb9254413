/**
 * Whole studies against a real Temporal dev server, real Optuna and the fake pipeline.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import YAML from 'yaml';
import { startOrAttach } from '../../src/client/start';
import { collectStatus } from '../../src/client/status';
import { createHpoWorkers, type HpoWorkers } from '../../src/worker/workers';
import { STUDY_TASK_QUEUE } from '../../src/common/taskQueues';
import { trialWorkflowId } from '../../src/workflows/ids';
import type { StudyResult, studyWorkflow } from '../../src/workflows/study';
import { makeFakeStudy, readOptunaStudy, type FakeStudy } from '../helpers/fakeStudy';
import { assertStudyInvariants } from '../helpers/invariants';
import { recordHistory } from '../helpers/histories';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;

before(async () => {
  temporal = await startTestTemporal('e2e');
});

after(async () => {
  await temporal?.close();
});

async function startWorkers(study: FakeStudy, slots: number): Promise<HpoWorkers> {
  return await createHpoWorkers({
    connection: temporal.nativeConnection,
    namespace: 'default',
    study: true,
    gpu: { taskQueue: study.spec.execution.taskQueue, slots, gpus: [] },
    workflowBundle: temporal.bundle,
    heartbeatThrottleMs: 500,
    pollIntervalMs: 100,
  });
}

/** Runs the study to its end with in-process workers; returns the workflow result. */
async function runStudy(study: FakeStudy, slots = 2): Promise<StudyResult> {
  const workers = await startWorkers(study, slots);
  const running = workers.run();
  try {
    const { handle } = await startOrAttach(temporal.client, study.spec);
    const result = await handle.result();
    await recordHistory(temporal.client, handle.workflowId, `study-${study.spec.studyName}`);
    await recordHistory(temporal.client, trialWorkflowId(result.studyName, 0), `trial-${study.spec.studyName}-0`);
    return result;
  } finally {
    workers.shutdown();
    await running;
  }
}

test('study completes all trials', async () => {
  const study = makeFakeStudy({ studyName: 'complete', nTrials: 5, parallel: 2, epochs: 3, finalFullPipeline: true });
  const result = await runStudy(study);

  assert.equal(result.counted, 5);
  assert.equal(result.states.COMPLETE, 5);
  assertStudyInvariants(study, result);

  const stored = readOptunaStudy(study.spec);
  for (const trial of stored) {
    // Every epoch reached Optuna as an intermediate value while the trial trained.
    assert.deepEqual(Object.keys(trial.intermediate).sort(), ['1', '2', '3']);
    // The value is the best epoch: quality * 3 / 3 for the sampled quality.
    assert.ok(Math.abs(trial.value! - (trial.params.quality as number)) < 1e-9);
    assert.equal(trial.userAttrs['hpo:run_id'], `test_t${String(trial.number).padStart(4, '0')}`);
    assert.equal(trial.userAttrs['hpo:attempts'], 1);
  }

  const best = YAML.parse(fs.readFileSync(result.bestParamsYaml, 'utf8'));
  const bestStored = stored.reduce((a, b) => (b.value! > a.value! ? b : a));
  assert.equal(best.study_name, 'complete');
  assert.equal(best.direction, 'maximize');
  assert.equal(best.objective_metric, 'val_auprc');
  assert.equal(best.best_value, bestStored.value);
  assert.deepEqual(best.best_params, bestStored.params);

  // The final full-pipeline run trained with the best parameters under its own run id.
  assert.equal(result.finalRun?.end, 'completed');
  assert.equal(result.finalRun?.trainRunId, 'test_best_train');
  const finalConfig = YAML.parse(fs.readFileSync(path.join(study.spec.artifactDir, 'trials', 'final', 'config.run1.yaml'), 'utf8'));
  assert.equal(finalConfig.run_config.mode, 'full_pipeline');
  assert.equal(finalConfig.model_config.quality, best.best_params.quality);

  const status = await collectStatus(temporal.client, 'complete');
  assert.equal(status.trials.length, 5);
  assert.deepEqual(Object.keys(status.trials[0]!).sort(), ['attempts', 'epoch', 'number', 'params', 'reason', 'run_id', 'state', 'value']);
});

test('pruner stops a trial mid-training', async () => {
  const study = makeFakeStudy({
    studyName: 'pruning',
    nTrials: 4,
    parallel: 2,
    epochs: 10,
    epochSeconds: 0.3,
    qualities: [0.1, 1.0],
    sampler: { name: 'GridSampler', search_space: { quality: [0.1, 1.0] }, seed: 1 },
    // Epoch k of quality q has value q * k / 10: quality 0.1 stays below 0.05 until epoch 5.
    pruner: { name: 'ThresholdPruner', lower: 0.05, n_warmup_steps: 2 },
  });
  const result = await runStudy(study);
  assertStudyInvariants(study, result);

  const stored = readOptunaStudy(study.spec);
  const pruned = stored.filter((t) => t.state === 'PRUNED');
  assert.ok(pruned.length >= 1, `expected a pruned trial, got ${JSON.stringify(stored.map((t) => t.state))}`);
  for (const trial of pruned) {
    assert.equal(trial.params.quality, 0.1);
    const steps = Object.keys(trial.intermediate).map(Number);
    // Pruned at the first step after warm-up, long before the last of 10 epochs.
    assert.ok(Math.max(...steps) < 10, `trial ${trial.number} reported steps ${steps}`);
    const csv = path.join(study.projectDir, 'pipeline', 'logs', 'fake', 'train', trial.userAttrs['hpo:run_id'] as string, 'training_step.csv');
    const rows = fs.readFileSync(csv, 'utf8').trim().split('\n').length - 1;
    // The pipeline was stopped: it never wrote its last epoch.
    assert.ok(rows < 10, `pruned trial ${trial.number} wrote ${rows} epochs`);
  }
  for (const trial of stored.filter((t) => t.params.quality === 1.0)) assert.equal(trial.state, 'COMPLETE');
});

test('out of memory ends the trial pruned', async () => {
  const study = makeFakeStudy({ studyName: 'oom', nTrials: 2, parallel: 1, script: { '*': { oom_at_epoch: 2 } } });
  const result = await runStudy(study);
  assertStudyInvariants(study, result);

  const stored = readOptunaStudy(study.spec);
  assert.deepEqual(stored.map((t) => t.state), ['PRUNED', 'PRUNED']);
  assert.match(String(stored[0]!.userAttrs['hpo:reason']), /out of memory/);
});

test('out of memory fails the trial when not caught', async () => {
  const study = makeFakeStudy({
    studyName: 'oomfail',
    nTrials: 1,
    execution: { catch_oom_as_pruned: false },
    script: { '*': { oom_at_epoch: 2 } },
  });
  const result = await runStudy(study);
  assertStudyInvariants(study, result);
  const [trial] = readOptunaStudy(study.spec);
  assert.equal(trial!.state, 'FAIL');
  assert.match(String(trial!.userAttrs['hpo:reason']), /out of memory/);
});

test('crashed trial fails and study goes on', async () => {
  const study = makeFakeStudy({ studyName: 'crash', nTrials: 3, parallel: 1, script: { test_t0000: { crash_at_epoch: 2, exit_code: 3 } } });
  const result = await runStudy(study);
  assertStudyInvariants(study, result);

  const stored = readOptunaStudy(study.spec);
  assert.deepEqual(stored.map((t) => t.state), ['FAIL', 'COMPLETE', 'COMPLETE']);
  const reason = String(stored[0]!.userAttrs['hpo:reason']);
  assert.match(reason, /code 3/);
  // The reason carries the end of the pipeline's log, so the user sees the traceback.
  assert.match(reason, /RuntimeError/);
  // A pipeline failure is not retried: the trial ran once.
  assert.equal(study.runs().filter((r) => r.runId === 'test_t0000').length, 1);
});

test('second start attaches to running study', async () => {
  const study = makeFakeStudy({ studyName: 'attach', nTrials: 2, parallel: 1, epochs: 3, epochSeconds: 0.3 });
  const workers = await startWorkers(study, 1);
  const running = workers.run();
  try {
    const first = await startOrAttach(temporal.client, study.spec);
    const second = await startOrAttach(temporal.client, study.spec);
    assert.equal(first.attached, false);
    assert.equal(second.attached, true);
    assert.equal((await second.handle.describe()).runId, (await first.handle.describe()).runId);
    const result = await second.handle.result();
    assert.equal(result.counted, 2);
  } finally {
    workers.shutdown();
    await running;
  }
});

test('continue-as-new keeps running trials', async () => {
  const study = makeFakeStudy({ studyName: 'canew', nTrials: 6, parallel: 2, epochs: 4, epochSeconds: 0.2 });
  const workers = await startWorkers(study, 2);
  const running = workers.run();
  try {
    // A tiny history limit makes the study continue-as-new while trials are running.
    const handle = await temporal.client.workflow.start<typeof studyWorkflow>('studyWorkflow', {
      workflowId: 'study-canew',
      taskQueue: STUDY_TASK_QUEUE,
      args: [{ spec: study.spec, historyEventLimit: 40 }],
    });
    const result = await handle.result();
    assert.equal(result.counted, 6);
    assert.equal(result.states.COMPLETE, 6);
    assertStudyInvariants(study, result);

    const firstRun = await temporal.client.workflow.getHandle('study-canew', handle.firstExecutionRunId).fetchHistory();
    const last = firstRun.events![firstRun.events!.length - 1]!;
    // The first run ended by continuing as new, not by finishing the study.
    assert.ok(last.workflowExecutionContinuedAsNewEventAttributes, 'first run did not continue-as-new');
    await recordHistory(temporal.client, 'study-canew', 'study-canew-last-run');
  } finally {
    workers.shutdown();
    await running;
  }
});
