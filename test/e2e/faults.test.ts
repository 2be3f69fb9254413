/**
 * Whole studies whose pipelines fail, write broken training logs, or are stopped and extended
 * while they run: real Temporal dev server, real Optuna, the fake pipeline, and workers in this
 * process. Each test ends with the shared study invariants and reads the Optuna storage back.
 *
 * An activity attempt lost to a heartbeat timeout (a killed GPU worker) is retried on another
 * worker. durability.test.ts covers that case with worker processes ended by real signals.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { startOrAttach } from '../../src/client/start';
import { createHpoWorkers } from '../../src/worker/workers';
import { trialWorkflowId } from '../../src/workflows/ids';
import { setTrialBudgetUpdate, stopStudySignal, studyProgressQuery, trialProgressQuery } from '../../src/workflows/messages';
import type { StudyResult, studyWorkflow } from '../../src/workflows/study';
import { makeFakeStudy, type FakeStudy, type StoredTrial } from '../helpers/fakeStudy';
import { assertStudyInvariants } from '../helpers/invariants';
import { killProcessGroupIfOwned, processExists, processGroupExists, waitFor } from '../helpers/processes';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

const TEST_TIMEOUT_MS = 90_000;
/** Long enough for a pipeline or a CLI process (tsx compiles the sources) to start on a busy machine. */
const WAIT_MS = 30_000;
const HPO_BIN = path.resolve(__dirname, '..', '..', 'bin', 'hpo.js');

let temporal: TestTemporal;
/** Studies of the running test, whose leftover pipelines afterEach kills. */
const studies: FakeStudy[] = [];

before(async () => {
  temporal = await startTestTemporal('faults');
});

afterEach(() => {
  for (const study of studies.splice(0)) {
    for (const run of study.runs()) killProcessGroupIfOwned(run.pid, study.projectDir);
  }
});

after(async () => {
  await temporal?.close();
});

function makeStudy(options: Parameters<typeof makeFakeStudy>[0]): FakeStudy {
  const study = makeFakeStudy(options);
  studies.push(study);
  return study;
}

type StudyHandle = WorkflowHandle<typeof studyWorkflow>;

/**
 * Runs the study to its end with in-process study and GPU workers. `during` runs next to the
 * study once it has started, to stop or extend it. Returns the study's result once both have ended.
 */
async function runStudy(study: FakeStudy, during?: (handle: StudyHandle) => Promise<void>): Promise<StudyResult> {
  const workers = await createHpoWorkers({
    connection: temporal.nativeConnection,
    namespace: 'default',
    study: true,
    gpu: { taskQueue: study.spec.execution.taskQueue, slots: study.spec.execution.parallelTrials, gpus: [] },
    workflowBundle: temporal.bundle,
    heartbeatThrottleMs: 500,
    pollIntervalMs: 100,
  });
  const running = workers.run();
  try {
    const { handle } = await startOrAttach(temporal.client, study.spec);
    const [result] = await Promise.all([handle.result(), during ? during(handle) : Promise.resolve()]);
    return result;
  } finally {
    workers.shutdown();
    await running;
  }
}

function startCount(study: FakeStudy, runId: string): number {
  return study.runs().filter((run) => run.runId === runId).length;
}

function waitForRunStarts(study: FakeStudy, runId: string, count: number): Promise<true> {
  return waitFor(`${count} starts of run ${runId}`, () => (startCount(study, runId) >= count ? true : undefined), WAIT_MS, 50);
}

/** Waits until the trial workflow has received at least `epoch` epochs from its training run. */
async function waitForEpoch(study: FakeStudy, trialNumber: number, epoch: number): Promise<void> {
  const handle = temporal.client.workflow.getHandle(trialWorkflowId(study.spec.studyName, trialNumber));
  await waitFor(
    `trial ${trialNumber} to report epoch ${epoch}`,
    async () => ((await handle.query(trialProgressQuery)).lastEpoch >= epoch ? true : undefined),
    WAIT_MS,
    100,
  );
}

function trainingCsvPath(study: FakeStudy, runId: string): string {
  return path.join(study.spec.execution.workdir, 'logs', 'fake', 'train', runId, 'training_step.csv');
}

/**
 * Returns whether a stored intermediate value is NaN. JSON has no NaN, so readOptunaStudy may
 * return it as the string "nan", as it does for a trial's value.
 */
function isStoredNaN(value: unknown): boolean {
  return typeof value === 'number' ? Number.isNaN(value) : value === 'nan';
}

function reasonOf(trial: StoredTrial): string {
  return String(trial.userAttrs['hpo:reason']);
}

/** Intermediate values sorted by step, as [step, value] pairs. */
function intermediateSteps(trial: StoredTrial): Array<[number, number]> {
  return Object.entries(trial.intermediate)
    .map(([step, value]): [number, number] => [Number(step), value])
    .sort((a, b) => a[0] - b[0]);
}

/** Returns the fake pipeline's default curve up to epoch `upTo`: epoch k has the value quality * k / epochs. */
function expectedCurve(trial: StoredTrial, epochs: number, upTo = epochs): Array<[number, number]> {
  const quality = trial.params.quality as number;
  return Array.from({ length: upTo }, (_, index): [number, number] => [index + 1, (quality * (index + 1)) / epochs]);
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/hpo.js <args>` against the test server; asynchronous, so the in-process workers keep running. */
function runCli(args: string[]): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: 'default' };
  // A profile or API key of the developer's own environment must not redirect the command.
  delete env.TEMPORAL_PROFILE;
  delete env.TEMPORAL_API_KEY;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HPO_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// --- non-zero exit ------------------------------------------------------------------------------

test('non-zero exit: FAIL without retry', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'exit-code', nTrials: 2, epochs: 3, script: { test_t0000: { crash_at_epoch: 2, exit_code: 7 } } });
  const result = await runStudy(study);
  const stored = assertStudyInvariants(study, result);

  assert.deepEqual(stored.map((t) => t.state), ['FAIL', 'COMPLETE']);
  const [failed, completed] = stored as [StoredTrial, StoredTrial];
  assert.equal(failed.value, null);
  // Epoch 1 reached Optuna before the crash at epoch 2.
  assert.deepEqual(intermediateSteps(failed), expectedCurve(failed, 3, 1));
  assert.ok(reasonOf(failed).startsWith('pipeline exited with code 7; last lines of the log:\n'), reasonOf(failed));
  // The reason ends with the pipeline's traceback.
  assert.match(reasonOf(failed), /RuntimeError: fake pipeline crashed at epoch 2/);
  assert.equal(failed.userAttrs['hpo:run_id'], 'test_t0000');
  assert.equal(failed.userAttrs['hpo:attempts'], 1);
  // retry_failed_trials defaults to 0: a failed pipeline runs once.
  assert.equal(startCount(study, 'test_t0000'), 1);

  assert.equal(completed.userAttrs['hpo:reason'], null);
  assert.equal(startCount(study, 'test_t0001'), 1);
});

test('non-zero exit: retried when configured', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({
    studyName: 'exit-retry',
    nTrials: 1,
    epochs: 4,
    epochSeconds: 0.5,
    execution: { retry_failed_trials: 1 },
    script: { test_t0000: { crash_at_epoch: 3 } },
  });
  const result = await runStudy(study, async () => {
    // The fake reads its script when a run starts, so the second run trains normally. The first
    // run crashes a second after its start, long before the second run starts.
    await waitForRunStarts(study, 'test_t0000', 1);
    study.setScript({});
  });
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.equal(trial.state, 'COMPLETE');
  assert.equal(trial.value, trial.params.quality);
  // Both runs write epochs 1 and 2: the first value of a step counts, and the second run adds the rest.
  assert.deepEqual(intermediateSteps(trial), expectedCurve(trial, 4));
  assert.equal(startCount(study, 'test_t0000'), 2);
  assert.equal(trial.userAttrs['hpo:attempts'], 2);
  assert.equal(trial.userAttrs['hpo:reason'], null);

  // The second run moved the first one's folder aside, traceback included.
  const firstRunLog = path.join(path.dirname(trainingCsvPath(study, 'test_t0000')) + '.old1', 'log.log');
  assert.ok(fs.existsSync(firstRunLog), `${firstRunLog} is missing`);
  const trialFolder = path.join(study.spec.artifactDir, 'trials', 't0000');
  assert.match(fs.readFileSync(path.join(trialFolder, 'pipeline.run1.attempt1.log'), 'utf8'), /RuntimeError: fake pipeline crashed at epoch 3/);
  assert.ok(fs.existsSync(path.join(trialFolder, 'pipeline.run2.attempt1.log')), 'the second run has its own log');
});

// --- infrastructure -----------------------------------------------------------------------------

test('unstartable command: FAIL, not retried', { timeout: TEST_TIMEOUT_MS }, async () => {
  const missing = '/nonexistent/hpo-test/python3';
  const study = makeStudy({ studyName: 'no-exec', nTrials: 1, execution: { command: [missing, '-m', 'src.run', '--config', '{config}'] } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.equal(trial.state, 'FAIL');
  assert.ok(reasonOf(trial).startsWith('infrastructure: cannot start the pipeline: executable not found: '), reasonOf(trial));
  assert.ok(reasonOf(trial).includes(missing), reasonOf(trial));
  // PipelineStartError is not retryable: a command that cannot start fails the same way everywhere.
  assert.equal(trial.userAttrs['hpo:attempts'], 1);
  const trialFolder = path.join(study.spec.artifactDir, 'trials', 't0000');
  assert.ok(fs.existsSync(path.join(trialFolder, 'pipeline.run1.attempt1.log')), 'the first attempt opened its log');
  assert.equal(fs.existsSync(path.join(trialFolder, 'pipeline.run1.attempt2.log')), false, 'a second attempt ran');
  assert.equal(study.runs().length, 0);
});

// --- out of memory ------------------------------------------------------------------------------

test('CUDA out of memory: pruned after retry', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'oom-retry', nTrials: 1, epochs: 3, execution: { oom_retries: 1 }, script: { '*': { oom_at_epoch: 2 } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.equal(trial.state, 'PRUNED');
  // The reason quotes the log line with PyTorch's message, once.
  assert.ok(reasonOf(trial).startsWith('out of memory: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate'), reasonOf(trial));
  assert.equal(startCount(study, 'test_t0000'), 2);
  assert.equal(trial.userAttrs['hpo:attempts'], 2);
  assert.deepEqual(intermediateSteps(trial), expectedCurve(trial, 3, 1));
  // Optuna stores a pruned trial with its last intermediate value.
  assert.equal(trial.value, intermediateSteps(trial)[0]![1]);
});

test('OOM killer SIGKILL: pruned', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'oom-killer', nTrials: 2, epochs: 3, script: { test_t0000: { sigkill_self_at_epoch: 2 } } });
  const result = await runStudy(study);
  const stored = assertStudyInvariants(study, result);

  assert.deepEqual(stored.map((t) => t.state), ['PRUNED', 'COMPLETE']);
  const [killed] = stored as [StoredTrial];
  // A SIGKILL that the orchestrator did not send is taken for the kernel's out-of-memory killer.
  assert.ok(reasonOf(killed).startsWith('out of memory: killed by SIGKILL, not by the orchestrator'), reasonOf(killed));
  assert.match(reasonOf(killed), /out-of-memory killer/);
  // oom_retries defaults to 0.
  assert.equal(startCount(study, 'test_t0000'), 1);
  assert.equal(killed.userAttrs['hpo:attempts'], 1);
  assert.deepEqual(intermediateSteps(killed), expectedCurve(killed, 3, 1));
});

// --- broken training logs -----------------------------------------------------------------------

test('duplicate epoch: first row counts', { timeout: TEST_TIMEOUT_MS }, async () => {
  // The repeated epoch 2 is written with 0.5 + 0.25, which would be the best value if it counted.
  const study = makeStudy({ studyName: 'dup-epoch', nTrials: 1, epochs: 3, script: { '*': { values: [0.2, 0.5, 0.4], duplicate_epoch: 2 } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  const rows = fs.readFileSync(trainingCsvPath(study, 'test_t0000'), 'utf8').trim().split('\n').slice(1);
  assert.deepEqual(rows.map((row) => row.split(',')[0]), ['1', '2', '2', '3'], 'the pipeline wrote epoch 2 twice');
  assert.equal(trial.state, 'COMPLETE');
  assert.deepEqual(intermediateSteps(trial), [
    [1, 0.2],
    [2, 0.5],
    [3, 0.4],
  ]);
  assert.equal(trial.value, 0.5);
});

test('NaN values: final NaN fails the trial', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'nan-final', nTrials: 3, epochs: 3, script: { test_t0001: { values: ['nan', 'nan', 'nan'] } } });
  const result = await runStudy(study);
  const stored = assertStudyInvariants(study, result);

  // Optuna's tell turns a NaN objective value into FAIL; the trials around it are unaffected.
  assert.deepEqual(stored.map((t) => t.state), ['COMPLETE', 'FAIL', 'COMPLETE']);
  const nanTrial = stored[1]!;
  assert.equal(nanTrial.value, null);
  assert.deepEqual(Object.keys(nanTrial.intermediate).sort(), ['1', '2', '3']);
  for (const value of Object.values(nanTrial.intermediate)) assert.ok(isStoredNaN(value), `intermediate value ${value} is not NaN`);
  // Optuna chose the state, so the storage has no reason. The study's own summary names Optuna as the cause.
  assert.equal(nanTrial.userAttrs['hpo:reason'], null);
  const summary = result.trials.find((t) => t.number === 1);
  assert.equal(summary?.state, 'FAIL');
  assert.equal(summary?.reason, 'Optuna stored FAIL');
  for (const trial of [stored[0]!, stored[2]!]) {
    assert.equal(trial.value, trial.params.quality);
    assert.deepEqual(intermediateSteps(trial), expectedCurve(trial, 3));
  }
});

test('NaN intermediate: MedianPruner prunes', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({
    studyName: 'nan-median',
    nTrials: 2,
    epochs: 6,
    epochSeconds: 0.3,
    pruner: { name: 'MedianPruner', n_startup_trials: 1, n_warmup_steps: 0 },
    script: { test_t0001: { values: ['nan', 'nan', 'nan', 'nan', 'nan', 'nan'] } },
  });
  const result = await runStudy(study);
  const stored = assertStudyInvariants(study, result);

  // Optuna's MedianPruner prunes a trial whose intermediate values are all NaN once a trial has completed.
  assert.equal(stored[1]!.state, 'PRUNED');
  const nanTrial = stored[1]!;
  const steps = intermediateSteps(nanTrial);
  assert.ok(steps.length < 6, `the NaN trial reported all ${steps.length} epochs`);
  for (const [, value] of steps) assert.ok(isStoredNaN(value), `intermediate value ${value} is not NaN`);
  // Optuna stores a pruned trial's last intermediate value only when it is finite.
  assert.equal(nanTrial.value, null);
  assert.match(reasonOf(nanTrial), /^pruned by MedianPruner at epoch \d+$/);

  assert.equal(stored[0]!.state, 'COMPLETE');
  assert.equal(stored[0]!.value, stored[0]!.params.quality);
});

test('objective column missing: FAIL', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'no-objective', nTrials: 1, epochs: 3, script: { '*': { missing_objective: true } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.equal(trial.state, 'FAIL');
  assert.match(reasonOf(trial), /^objective column "Val auprc" not found in /);
  // The reason lists the columns that the file has.
  assert.ok(reasonOf(trial).includes('its columns are: Epoch, Epoch Time, Train Loss, Val Loss, Val auroc, Learning Rate.'), reasonOf(trial));
  assert.ok(reasonOf(trial).includes(trainingCsvPath(study, 'test_t0000')), reasonOf(trial));
  assert.deepEqual(trial.intermediate, {});
  assert.equal(startCount(study, 'test_t0000'), 1);
});

test('BOM and CRLF: values read', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'bom-crlf', nTrials: 1, epochs: 3, script: { '*': { bom: true, crlf: true } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  const raw = fs.readFileSync(trainingCsvPath(study, 'test_t0000'));
  assert.deepEqual([...raw.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'the file starts with a byte-order mark');
  assert.ok(raw.toString('utf8').includes('\r\n'), 'the file has CRLF line ends');
  assert.equal(trial.state, 'COMPLETE');
  assert.equal(trial.value, trial.params.quality);
  assert.deepEqual(intermediateSteps(trial), expectedCurve(trial, 3));
});

test('last row without newline counts', { timeout: TEST_TIMEOUT_MS }, async () => {
  // The last epoch is the best, so the trial's value shows whether its row was read.
  const study = makeStudy({ studyName: 'no-newline', nTrials: 1, epochs: 3, script: { '*': { values: [0.2, 0.3, 0.9], no_newline_at_end: true } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.ok(!fs.readFileSync(trainingCsvPath(study, 'test_t0000'), 'utf8').endsWith('\n'), 'the file ends without a line end');
  assert.equal(trial.state, 'COMPLETE');
  assert.equal(trial.value, 0.9);
  assert.deepEqual(intermediateSteps(trial), [
    [1, 0.2],
    [2, 0.3],
    [3, 0.9],
  ]);
});

test('CSV created late: COMPLETE', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'late-csv', nTrials: 1, epochs: 3, script: { '*': { delay_file_seconds: 2 } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.equal(trial.state, 'COMPLETE');
  assert.equal(trial.value, trial.params.quality);
  assert.deepEqual(intermediateSteps(trial), expectedCurve(trial, 3));
});

test('CSV never created: FAIL names path', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'no-csv', nTrials: 1, epochs: 3, script: { '*': { no_file: true } } });
  const result = await runStudy(study);
  const [trial] = assertStudyInvariants(study, result) as [StoredTrial];

  assert.equal(trial.state, 'FAIL');
  assert.equal(reasonOf(trial), `the pipeline exited 0 but wrote no ${trainingCsvPath(study, 'test_t0000')}`);
  assert.deepEqual(trial.intermediate, {});
  assert.equal(startCount(study, 'test_t0000'), 1);
});

// --- stop and extend a running study ------------------------------------------------------------

test('hpo stop: running trials finish', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'stop-graceful', nTrials: 6, parallel: 2, epochs: 10, epochSeconds: 0.5 });
  let cli: CliResult | null = null;
  const result = await runStudy(study, async (handle) => {
    await waitForRunStarts(study, 'test_t0000', 1);
    await waitForRunStarts(study, 'test_t0001', 1);
    cli = await runCli(['stop', 'stop-graceful']);
    assert.equal((await handle.query(studyProgressQuery)).stop, 'graceful');
  });

  assert.deepEqual(cli, { code: 0, stdout: 'Stop requested for stop-graceful: running trials finish, no new trial starts.\n', stderr: '' });
  const started = new Set(study.runs().map((run) => run.runId));
  const stored = assertStudyInvariants(study, result, { expectedCounted: started.size });
  assert.equal(result.stop, 'graceful');
  // The stop came while the first two trials were training, long before the sixth could start.
  assert.ok(result.counted < 6, `counted ${result.counted}`);
  assert.equal(stored.length, started.size, 'no trial was asked after the stop');
  for (const trial of stored) {
    assert.equal(trial.state, 'COMPLETE', `trial ${trial.number}: ${reasonOf(trial)}`);
    assert.deepEqual(intermediateSteps(trial), expectedCurve(trial, 10));
  }
});

test('stop now: running trials FAIL', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const study = makeStudy({ studyName: 'stop-now', nTrials: 4, parallel: 2, epochs: 40, epochSeconds: 0.3, script: { '*': { spawn_child: true } } });
  let stoppedAt = 0;
  const result = await runStudy(study, async (handle) => {
    await waitForEpoch(study, 0, 1);
    await waitForEpoch(study, 1, 1);
    stoppedAt = Date.now();
    await handle.signal(stopStudySignal, 'now');
  });
  const endedAt = Date.now();

  const stored = assertStudyInvariants(study, result, { expectedCounted: 2 });
  assert.equal(result.stop, 'now');
  assert.deepEqual(stored.map((t) => t.state), ['FAIL', 'FAIL']);
  for (const trial of stored) {
    assert.ok(reasonOf(trial).startsWith('stopped'), `trial ${trial.number}: ${reasonOf(trial)}`);
    assert.equal(trial.value, null);
    assert.ok(Object.keys(trial.intermediate).length < 40, `trial ${trial.number} trained to the end`);
  }

  // Each pipeline's process group, its `sleep` child included, is stopped.
  for (const run of study.runs()) {
    await waitFor(`process group ${run.pid} to end`, () => (processGroupExists(run.pid) ? undefined : true), 10_000, 100);
    t.diagnostic(`process group ${run.pid} gone ${Date.now() - stoppedAt} ms after the stop, ${Date.now() - endedAt} ms after the study ended`);
    assert.equal(processExists(run.pid), false);
  }
});

test('budget update: raise and reject', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({ studyName: 'budget', nTrials: 2, parallel: 2, epochs: 10, epochSeconds: 0.5 });
  let cli: CliResult | null = null;
  const rejections: string[] = [];
  let raisedTo: number | null = null;
  const result = await runStudy(study, async (handle) => {
    await waitForRunStarts(study, 'test_t0000', 1);
    await waitForRunStarts(study, 'test_t0001', 1);
    // Two trials run: a budget below 2, or below 1 at all, is rejected.
    for (const nTrials of [1, 0]) {
      await handle.executeUpdate(setTrialBudgetUpdate, { args: [nTrials] }).then(
        () => rejections.push(`budget ${nTrials} accepted`),
        (error: Error) => rejections.push(error.cause instanceof Error ? error.cause.message : error.message),
      );
    }
    raisedTo = await handle.executeUpdate(setTrialBudgetUpdate, { args: [3] });
    // The raise keeps the study running while the command line starts.
    cli = await runCli(['budget', 'budget', '4']);
  });

  assert.deepEqual(rejections, [
    'nTrials must be at least 2 (trials already finished or running), but got 1',
    'nTrials must be an integer of at least 1, but got 0',
  ]);
  assert.equal(raisedTo, 3);
  assert.deepEqual(cli, { code: 0, stdout: 'Trial budget of budget is now 4.\n', stderr: '' });
  assert.equal(result.nTrials, 4);
  const stored = assertStudyInvariants(study, result, { expectedCounted: 4 });
  assert.deepEqual(stored.map((t) => t.state), ['COMPLETE', 'COMPLETE', 'COMPLETE', 'COMPLETE']);
  assert.equal(study.runs().length, 4);
});
