/**
 * Trials survive the loss of their GPU worker, a worker asked to stop, and a hung trainer: real
 * Temporal dev server, real Optuna, the fake pipeline, and GPU workers as child processes that
 * the tests end with real signals. The study worker runs in this process.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { startOrAttach } from '../../src/client/start';
import { createHpoWorkers } from '../../src/worker/workers';
import { trialWorkflowId } from '../../src/workflows/ids';
import { trialProgressQuery, type TrialProgress } from '../../src/workflows/messages';
import type { StudyResult } from '../../src/workflows/study';
import { makeFakeStudy, readOptunaStudy, type FakeStudy } from '../helpers/fakeStudy';
import {
  killAllWorkerProcesses,
  killProcessGroupIfOwned,
  logTail,
  processExists,
  processGroupExists,
  signalProcessGroup,
  startGpuWorkerProcess,
  waitFor,
  type ProcessExit,
  type WorkerProcess,
} from '../helpers/processes';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

const TEST_TIMEOUT_MS = 120_000;
/** Long enough for a worker process to start (tsx compiles the sources) on a busy machine. */
const WAIT_MS = 60_000;

let temporal: TestTemporal;
/** Studies of the running test, whose leftover pipelines afterEach kills. */
const studies: FakeStudy[] = [];

before(async () => {
  temporal = await startTestTemporal('durability');
});

afterEach(async () => {
  await killAllWorkerProcesses();
  for (const study of studies.splice(0)) {
    for (const run of study.runs()) killProcessGroupIfOwned(run.pid, study.projectDir);
  }
});

after(async () => {
  await killAllWorkerProcesses();
  await temporal?.close();
});

function makeStudy(options: Parameters<typeof makeFakeStudy>[0]): FakeStudy {
  const study = makeFakeStudy(options);
  studies.push(study);
  return study;
}

function startWorkerProcess(study: FakeStudy, name: string): Promise<WorkerProcess> {
  return startGpuWorkerProcess({
    address: temporal.address,
    taskQueue: study.spec.execution.taskQueue,
    slots: 1,
    logFile: path.join(study.projectDir, `worker-${name}.log`),
  });
}

/** Runs `body` while a study worker (workflows and Optuna, no GPU role) runs in this process. */
async function withStudyWorker<T>(body: () => Promise<T>): Promise<T> {
  const workers = await createHpoWorkers({
    connection: temporal.nativeConnection,
    namespace: 'default',
    study: true,
    gpu: null,
    workflowBundle: temporal.bundle,
  });
  const running = workers.run();
  try {
    return await body();
  } finally {
    workers.shutdown();
    await running;
  }
}

/** Waits until the trial workflow has received at least `epoch` epochs from its training run. */
async function waitForEpoch(study: FakeStudy, trialNumber: number, epoch: number): Promise<TrialProgress> {
  const handle = temporal.client.workflow.getHandle(trialWorkflowId(study.spec.studyName, trialNumber));
  return await waitFor(
    `trial ${trialNumber} to report epoch ${epoch}`,
    async () => {
      const progress = await handle.query(trialProgressQuery);
      return progress.lastEpoch >= epoch ? progress : undefined;
    },
    WAIT_MS,
    200,
  );
}

/** Waits until `count` pipeline runs of `runId` have started. Returns the time (ms since the epoch) the last start was seen. */
async function waitForRunStarts(study: FakeStudy, runId: string, count: number): Promise<number> {
  return await waitFor(
    `${count} starts of run ${runId}`,
    () => (study.runs().filter((r) => r.runId === runId).length >= count ? Date.now() : undefined),
    WAIT_MS,
    100,
  );
}

function pipelinePid(study: FakeStudy, runId: string): number {
  const run = study.runs().find((r) => r.runId === runId);
  assert.ok(run, `no start of run ${runId} in ${study.runsFile}`);
  return run.pid;
}

/** Resolves with the exit, or null when the process is still running after `ms`. */
async function exitWithin(worker: WorkerProcess, ms: number): Promise<ProcessExit | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([worker.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function trainingEpochs(csvPath: string): number[] {
  const [, ...rows] = fs.readFileSync(csvPath, 'utf8').trim().split('\n');
  return rows.map((row) => Number(row.split(',')[0]));
}

function runFolder(study: FakeStudy, runId: string): string {
  return path.join(study.spec.execution.workdir, 'logs', 'fake', 'train', runId);
}

test('killed GPU worker: trial finishes on another', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const study = makeStudy({ studyName: 'node-loss', nTrials: 1, epochs: 8, epochSeconds: 0.5 });

  const result = await withStudyWorker(async (): Promise<StudyResult> => {
    const first = await startWorkerProcess(study, 'a');
    const { handle } = await startOrAttach(temporal.client, study.spec);
    await waitForEpoch(study, 0, 2);

    // A lost node takes the worker and its trainer down together, without any cleanup.
    const pid = pipelinePid(study, 'test_t0000');
    const killedAt = Date.now();
    first.signal('SIGKILL');
    signalProcessGroup(pid, 'SIGKILL');
    await first.exited;

    const second = await startWorkerProcess(study, 'b');
    const rerunAt = await waitForRunStarts(study, 'test_t0000', 2);
    t.diagnostic(`second run started ${rerunAt - killedAt} ms after SIGKILL`);
    // The heartbeat timeout (5 s) plus the retry interval (5 s) and a worker start bound the gap.
    assert.ok(rerunAt - killedAt < 30_000, `second run started ${rerunAt - killedAt} ms after the kill\n${logTail(second.logFile)}`);
    return await handle.result();
  });

  assert.equal(result.counted, 1);
  assert.equal(result.states.COMPLETE, 1);

  const [trial] = readOptunaStudy(study.spec);
  assert.equal(trial!.state, 'COMPLETE');
  assert.equal(study.runs().filter((r) => r.runId === 'test_t0000').length, 2);

  // Each step reaches Optuna once, with the value the pipeline wrote: quality * k / 8.
  const quality = trial!.params.quality as number;
  assert.deepEqual(Object.keys(trial!.intermediate).map(Number).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (const [step, value] of Object.entries(trial!.intermediate)) {
    assert.ok(Math.abs(value - (quality * Number(step)) / 8) < 1e-9, `step ${step} has value ${value}`);
  }

  // The second attempt moved the first one's folder aside and wrote every epoch once.
  const folder = runFolder(study, 'test_t0000');
  assert.ok(fs.existsSync(`${folder}.old1`), `${folder}.old1 is missing`);
  assert.equal(fs.existsSync(`${folder}.old2`), false);
  assert.deepEqual(trainingEpochs(path.join(folder, 'training_step.csv')), [1, 2, 3, 4, 5, 6, 7, 8]);
  // Both pipeline runs count as attempts of the trial.
  assert.equal(trial!.userAttrs['hpo:attempts'], 2);
});

test('SIGTERM on GPU worker: trial handed back', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  // With a heartbeat timeout of 60 s, a re-run within 20 s proves that the worker handed the trial back.
  const study = makeStudy({ studyName: 'worker-stop', nTrials: 1, epochs: 8, epochSeconds: 0.5, execution: { heartbeat_timeout_seconds: 60 } });
  const killGraceMs = study.spec.execution.killGraceSeconds * 1000;

  const result = await withStudyWorker(async (): Promise<StudyResult> => {
    const first = await startWorkerProcess(study, 'a');
    const { handle } = await startOrAttach(temporal.client, study.spec);
    await waitForEpoch(study, 0, 2);

    const pid = pipelinePid(study, 'test_t0000');
    const stoppedAt = Date.now();
    first.signal('SIGTERM');

    // The worker stops its trainer within the kill grace time and then exits on its own.
    const exit = await exitWithin(first, killGraceMs + 10_000);
    const exitedAt = Date.now();
    assert.ok(exit, `worker A still runs ${killGraceMs + 10_000} ms after SIGTERM\n${logTail(first.logFile)}`);
    assert.equal(exit.code, 0, `worker A exited with ${JSON.stringify(exit)}\n${logTail(first.logFile)}`);
    assert.equal(processExists(pid), false, `pipeline ${pid} outlived its worker`);
    assert.equal(processGroupExists(pid), false, `process group ${pid} outlived its worker`);
    // The training activity saw the cancellation as a worker shutdown, which it fails retryably.
    const workerLog = fs.readFileSync(first.logFile, 'utf8');
    const cancelledAt = workerLog.indexOf('Training cancelled');
    assert.ok(cancelledAt >= 0, `worker A logged no cancelled training\n${logTail(first.logFile)}`);
    assert.match(workerLog.slice(cancelledAt, cancelledAt + 2000), /^Training cancelled; stopping the pipeline \{[^}]*workerShutdown: true/);

    await startWorkerProcess(study, 'b');
    const rerunAt = await waitForRunStarts(study, 'test_t0000', 2);
    t.diagnostic(`worker A exited ${exitedAt - stoppedAt} ms and the second run started ${rerunAt - stoppedAt} ms after SIGTERM`);
    assert.ok(rerunAt - stoppedAt < 20_000, `second run started ${rerunAt - stoppedAt} ms after SIGTERM`);
    return await handle.result();
  });

  assert.equal(result.counted, 1);
  const [trial] = readOptunaStudy(study.spec);
  assert.equal(trial!.state, 'COMPLETE');
  assert.deepEqual(trainingEpochs(path.join(runFolder(study, 'test_t0000'), 'training_step.csv')), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(trial!.userAttrs['hpo:attempts'], 2);
});

test('hung trainer: trial fails stalled', { timeout: TEST_TIMEOUT_MS }, async () => {
  const study = makeStudy({
    studyName: 'stall',
    nTrials: 2,
    epochs: 4,
    script: { test_t0000: { hang_at_epoch: 2 } },
    // 0.05 minutes is 3 s without a new epoch or log line.
    execution: { stall_timeout_minutes: 0.05 },
  });

  const result = await withStudyWorker(async (): Promise<StudyResult> => {
    await startWorkerProcess(study, 'a');
    const { handle } = await startOrAttach(temporal.client, study.spec);
    return await handle.result();
  });

  assert.equal(result.counted, 2);
  const stored = readOptunaStudy(study.spec);
  assert.deepEqual(stored.map((t) => t.state), ['FAIL', 'COMPLETE']);
  const reason = String(stored[0]!.userAttrs['hpo:reason']);
  assert.ok(reason.startsWith('stalled'), `reason: ${reason}`);

  // The stalled pipeline was stopped, not left hanging, and a stall is not retried.
  const hung = study.runs().filter((r) => r.runId === 'test_t0000');
  assert.equal(hung.length, 1);
  assert.equal(processExists(hung[0]!.pid), false, `stalled pipeline ${hung[0]!.pid} still runs`);
});
