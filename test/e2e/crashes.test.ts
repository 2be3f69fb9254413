/**
 * Three rows of the failure table, with real processes and real signals. A study worker and its
 * Optuna bridge are killed in the middle of an ask, a report and a tell. The Temporal server stops
 * while trials train. Everything is killed at once, and then `hpo start` runs again.
 *
 * Workers run as `node bin/hpo.js worker` child processes, each the leader of its own process
 * group, so that one signal reaches a worker and its bridge. Every process group and server that
 * a test starts is ended when the test ends, also when it fails halfway.
 *
 * HPO_TEST_SERVER_DOWN_SECONDS sets how long the server stays down (default 20 s).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { createHpoWorkers } from '../../src/worker/workers';
import { freePort, isPortOpen, startDevServer, type DevServer } from '../../src/client/devServer';
import { startOrAttach } from '../../src/client/start';
import { studyWorkflowId } from '../../src/workflows/ids';
import { studyProgressQuery } from '../../src/workflows/messages';
import type { StudyResult, studyWorkflow } from '../../src/workflows/study';
import { makeFakeStudy, PYTHON, readOptunaStudy, type FakeStudy, type StoredTrial } from '../helpers/fakeStudy';
import { assertStudyInvariants } from '../helpers/invariants';
import { killProcessGroupIfOwned, logTail, processExists, signalProcessGroup, waitFor, type ProcessExit } from '../helpers/processes';
import { startTestTemporal } from '../helpers/temporal';

const HPO_BIN = path.resolve(__dirname, '..', '..', 'bin', 'hpo.js');
const VENV_BIN = path.resolve(__dirname, '..', '..', '.venv', 'bin');
/** Long enough for a worker or `hpo start` (tsx compiles the sources) to start on a busy machine. */
const WAIT_MS = 60_000;
/**
 * The start-to-close timeout of the Optuna activities (proxies in src/workflows/study.ts and
 * trial.ts). They have no heartbeat timeout, so a call whose worker died, or whose result was
 * lost, is retried only after this time. Tests use it as an upper bound.
 */
const OPTUNA_START_TO_CLOSE_MS = 75_000;
const SERVER_DOWN_SECONDS = Number(process.env.HPO_TEST_SERVER_DOWN_SECONDS ?? 20);

const cleanupStacks = new WeakMap<TestContext, Array<() => unknown>>();

/**
 * Runs `cleanup` when the test ends, also when it fails halfway. Cleanups run in reverse order,
 * so processes end before the servers they use.
 */
function deferCleanup(t: TestContext, cleanup: () => unknown): void {
  let stack = cleanupStacks.get(t);
  if (!stack) {
    const created: Array<() => unknown> = [];
    cleanupStacks.set(t, created);
    t.after(async () => {
      for (const next of created.splice(0).reverse()) {
        try {
          await next();
        } catch (error) {
          process.stderr.write(`cleanup failed: ${(error as Error).message}\n`);
        }
      }
    });
    stack = created;
  }
  stack.push(cleanup);
}

/** Creates a study whose leftover pipelines are killed when the test ends. */
function makeStudy(t: TestContext, options: Parameters<typeof makeFakeStudy>[0]): FakeStudy {
  const study = makeFakeStudy(options);
  deferCleanup(t, () => {
    for (const run of study.runs()) killProcessGroupIfOwned(run.pid, study.projectDir);
  });
  return study;
}

// --- processes ------------------------------------------------------------------------------

interface GroupProcess {
  /** Process id, which is also the id of the process group it leads. */
  pid: number;
  logFile: string;
  exited: Promise<ProcessExit>;
  /** Whether the process has not exited yet. */
  running(): boolean;
}

/**
 * Returns the parent environment plus `extra`, without the developer's own Temporal settings
 * (address, profile, API key, config file) and bridge test hooks.
 */
function childEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('TEMPORAL_') || name.startsWith('HPO_BRIDGE_TEST_')) delete env[name];
  }
  return { ...env, ...extra };
}

/** Starts `node bin/hpo.js <args>` as the leader of a new process group, which is killed when the test ends. */
async function startHpoProcess(t: TestContext, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; logFile: string }): Promise<GroupProcess> {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = fs.openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [HPO_BIN, ...args], { cwd: options.cwd, env: options.env, stdio: ['ignore', log, log], detached: true });
  } finally {
    fs.closeSync(log);
  }
  const exited = new Promise<ProcessExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const proc: GroupProcess = {
    pid: child.pid!,
    logFile: options.logFile,
    exited,
    running: () => child.exitCode === null && child.signalCode === null,
  };
  deferCleanup(t, async () => {
    if (liveGroupMembers(proc.pid).length > 0) await killGroup(proc);
  });
  return proc;
}

/** Starts `hpo worker --role <role>` against the server at `address`. */
function startWorkerProcess(
  t: TestContext,
  role: 'study' | 'gpu',
  study: FakeStudy,
  options: { address: string; name: string; slots?: number; env?: NodeJS.ProcessEnv },
): Promise<GroupProcess> {
  const args = ['worker', '--role', role];
  if (role === 'gpu') args.push('--task-queue', study.spec.execution.taskQueue, '--slots', String(options.slots ?? 1));
  const env = childEnv({
    TEMPORAL_ADDRESS: options.address,
    TEMPORAL_NAMESPACE: 'default',
    HPO_HEARTBEAT_THROTTLE_MS: '500',
    HPO_POLL_INTERVAL_MS: '100',
    ...options.env,
  });
  return startHpoProcess(t, args, { cwd: study.projectDir, env, logFile: path.join(study.projectDir, `worker-${options.name}.log`) });
}

interface ProcInfo {
  pid: number;
  state: string;
  ppid: number;
  pgrp: number;
  cmdline: string;
}

/** Reads /proc/<pid>; null when the process is gone. */
function procInfo(pid: number): ProcInfo | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in brackets may hold spaces; the fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    return { pid, state: fields[0]!, ppid: Number(fields[1]), pgrp: Number(fields[2]), cmdline };
  } catch {
    return null;
  }
}

/** Lists the processes that have not exited; zombies count as exited, since no init may reap them. */
function liveProcesses(): ProcInfo[] {
  const processes: ProcInfo[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = procInfo(Number(entry));
    if (info && info.state !== 'Z') processes.push(info);
  }
  return processes;
}

function liveGroupMembers(pgid: number): ProcInfo[] {
  return liveProcesses().filter((info) => info.pgrp === pgid);
}

function isAlive(pid: number): boolean {
  const info = procInfo(pid);
  return info !== null && info.state !== 'Z';
}

/** Sends SIGKILL to the whole group and waits until none of its processes runs. */
async function killGroup(proc: GroupProcess): Promise<void> {
  signalProcessGroup(proc.pid, 'SIGKILL');
  await proc.exited;
  await waitFor(`process group ${proc.pid} to end`, () => (liveGroupMembers(proc.pid).length === 0 ? true : undefined), WAIT_MS, 50);
}

/** Resolves with the exit, or null when the process still runs after `ms`. */
async function exitWithin(proc: GroupProcess, ms: number): Promise<ProcessExit | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([proc.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until a line of the log matches `pattern`; returns the match. */
async function waitForLogLine(file: string, pattern: RegExp, timeoutMs = WAIT_MS): Promise<RegExpMatchArray> {
  return await waitFor(
    `${pattern} in ${file}`,
    () => (fs.existsSync(file) ? (fs.readFileSync(file, 'utf8').match(pattern) ?? undefined) : undefined),
    timeoutMs,
    50,
  );
}

/**
 * Waits for the study's result. After `ms`, fails with what the study workflow reports about
 * itself, so a study that waits forever shows where it waits.
 */
async function studyResultWithin(handle: WorkflowHandle<typeof studyWorkflow>, ms: number): Promise<StudyResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    return await handle.client.connection.withAbortSignal(controller.signal, () => handle.result());
  } catch (error) {
    if (!controller.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
  }
  const progress = await handle.query(studyProgressQuery).catch((error: Error) => `query failed: ${error.message}`);
  const summary = typeof progress === 'string' ? progress : JSON.stringify({ phase: progress.phase, counted: progress.counted, running: progress.running, nTrials: progress.nTrials });
  throw new Error(`study ${handle.workflowId} did not finish within ${ms} ms; it reports ${summary}`);
}

// --- study files ----------------------------------------------------------------------------

function runFolder(study: FakeStudy, runId: string): string {
  return path.join(study.spec.execution.workdir, 'logs', 'fake', 'train', runId);
}

function runId(number: number): string {
  return `test_t${String(number).padStart(4, '0')}`;
}

/** Epoch rows that the pipeline has written so far to its training_step.csv (0 before the file exists). */
function epochRows(study: FakeStudy, id: string): number {
  const csv = path.join(runFolder(study, id), 'training_step.csv');
  if (!fs.existsSync(csv)) return 0;
  return fs.readFileSync(csv, 'utf8').trim().split('\n').length - 1;
}

function startsOf(study: FakeStudy, id: string): number[] {
  return study.runs().filter((r) => r.runId === id).map((r) => r.pid);
}

/** The fake pipeline writes quality * k / epochs for epoch k; Optuna must hold exactly these values, each step once. */
function assertIntermediateValues(trial: StoredTrial, epochs: number): void {
  const quality = trial.params.quality as number;
  const steps = Object.keys(trial.intermediate).map(Number).sort((a, b) => a - b);
  assert.deepEqual(steps, Array.from({ length: epochs }, (_, i) => i + 1), `steps of trial ${trial.number}`);
  for (const [step, value] of Object.entries(trial.intermediate)) {
    assert.ok(Math.abs(value - (quality * Number(step)) / epochs) < 1e-9, `trial ${trial.number} step ${step} has value ${value}`);
  }
}

/**
 * Runs server starts one after another. The killed-worker tests run concurrently, and servers
 * that start together may pick the same free port for their internal services.
 */
let serverStarts: Promise<unknown> = Promise.resolve();
function inTurn<T>(start: () => Promise<T>): Promise<T> {
  const started = serverStarts.then(start);
  serverStarts = started.catch(() => undefined);
  return started;
}

/** Reads the stored result of the study workflow from a dev server started on the project's state file. */
async function storedStudyResult(projectDir: string, studyName: string): Promise<StudyResult> {
  const stateDir = path.join(projectDir, 'artifacts', 'temporal');
  const server = await inTurn(async () =>
    startDevServer({
      dbFile: path.join(stateDir, 'temporal.db'),
      logFile: path.join(stateDir, 'server-check.log'),
      port: await freePort(),
      uiPort: await freePort(),
    }),
  );
  try {
    const connection = await Connection.connect({ address: server.address });
    try {
      const client = new Client({ connection, namespace: 'default' });
      return await client.workflow.getHandle(studyWorkflowId(studyName)).result();
    } finally {
      await connection.close();
    }
  } finally {
    await server.stop();
  }
}

// --- the tests ------------------------------------------------------------------------------

type CallKind = 'ask' | 'report' | 'tell';

/** The call each test cuts: the log line of the bridge's test delay that marks it. */
const CUT_CALLS: Record<CallKind, RegExp> = {
  // Trial 0 trains while the study workflow waits for trial 1's number.
  ask: /Test delay: ask of trial 1 written/,
  report: /Test delay: report of trial 0 written \(steps \[([\d, ]+)\]\)/,
  tell: /Test delay: tell of trial 0 written/,
};

// Each test has its own server, so that killing one test's study worker leaves the calls of the
// others alone, and the three waits for a retried call overlap.
describe('killed study worker', { concurrency: true }, () => {
  for (const kind of ['ask', 'report', 'tell'] as const) {
    test(`killed study worker: cut ${kind}`, { timeout: OPTUNA_START_TO_CLOSE_MS + 120_000 }, async (t) => {
      const temporal = await inTurn(() => startTestTemporal(`crash-${kind}`));
      deferCleanup(t, () => temporal.close());
      const epochs = 4;
      // A generous heartbeat timeout keeps a busy machine from re-running a trial, because training
      // is not under test here.
      const study = makeStudy(t, {
        studyName: `cut-${kind}`,
        nTrials: 3,
        parallel: 2,
        epochs,
        epochSeconds: 0.3,
        execution: { heartbeat_timeout_seconds: 30 },
      });

      // Training runs on a GPU worker in this process; only study workers are killed.
      const gpu = await createHpoWorkers({
        connection: temporal.nativeConnection,
        namespace: 'default',
        study: false,
        gpu: { taskQueue: study.spec.execution.taskQueue, slots: 2, gpus: [] },
        heartbeatThrottleMs: 500,
        pollIntervalMs: 100,
      });
      const gpuRunning = gpu.run();
      deferCleanup(t, async () => {
        gpu.shutdown();
        await gpuRunning;
      });

      /** Starts a study worker whose bridge sleeps between the storage writes and the response of each call in `delays` (seconds). */
      const startStudyWorker = async (name: string, delays: Record<string, number>): Promise<GroupProcess> => {
        const worker = await startWorkerProcess(t, 'study', study, {
          address: temporal.address,
          name,
          env: { HPO_BRIDGE_TEST_DELAY: JSON.stringify(delays) },
        });
        await waitForLogLine(worker.logFile, /Study worker created/);
        // The worker and its bridge share one process group, so one SIGKILL ends both.
        const members = liveGroupMembers(worker.pid).map((p) => p.cmdline);
        assert.ok(members.some((cmd) => cmd.includes('optuna_bridge.py')), `no bridge in the group of worker ${name}: ${members.join('; ')}`);
        return worker;
      };

      const first = await startStudyWorker('a', { [kind]: 3 });
      const { handle } = await startOrAttach(temporal.client, study.spec);
      const cut = await waitForLogLine(first.logFile, CUT_CALLS[kind]);
      await killGroup(first);
      const killedAt = Date.now();
      const atKill = readOptunaStudy(study.spec);

      const second = await startStudyWorker('b', {});
      const result = await studyResultWithin(handle, OPTUNA_START_TO_CLOSE_MS + 60_000);
      t.diagnostic(`study finished ${Date.now() - killedAt} ms after the ${kind} was cut`);

      const stored = assertStudyInvariants(study, result);
      // The study contains exactly 3 trials, all complete: a repeated call created no trial and failed none.
      assert.deepEqual(stored.map((trial) => trial.number), [0, 1, 2]);
      assert.deepEqual(stored.map((trial) => trial.state), ['COMPLETE', 'COMPLETE', 'COMPLETE']);
      const askKeys = stored.map((trial) => String(trial.userAttrs['hpo:ask_key']));
      assert.equal(new Set(askKeys).size, 3, `ask keys ${askKeys.join(', ')}`);
      // Each step reached Optuna once, with the value the pipeline wrote first.
      for (const trial of stored) assertIntermediateValues(trial, epochs);
      // Killing study workers never touched training: every run started once.
      for (const trial of stored) assert.equal(startsOf(study, runId(trial.number)).length, 1, `starts of ${runId(trial.number)}`);

      if (kind === 'ask') {
        // The cut ask had stored trial 1; the repeated ask returned it instead of a new trial.
        const storedByAsk = atKill.find((trial) => trial.number === 1);
        assert.ok(storedByAsk, 'the cut ask stored trial 1');
        assert.equal(stored[1]!.userAttrs['hpo:ask_key'], storedByAsk.userAttrs['hpo:ask_key']);
        assert.deepEqual(stored[1]!.params, storedByAsk.params);
        assert.match(fs.readFileSync(second.logFile, 'utf8'), /Trial asked again with the same key; reusing it/);
      }
      if (kind === 'report') {
        const steps = cut[1]!.split(',').map((step) => step.trim());
        const reported = atKill.find((trial) => trial.number === 0)!;
        for (const step of steps) assert.ok(step in reported.intermediate, `the cut report stored step ${step}`);
      }
      if (kind === 'tell') {
        const storedByTell = atKill.find((trial) => trial.number === 0)!;
        assert.equal(storedByTell.state, 'COMPLETE', 'the cut tell stored trial 0 as COMPLETE');
        // The repeated tell changed nothing: the workflow reports the state and value of the first tell.
        const summary = result.trials.find((trial) => trial.number === 0)!;
        assert.equal(summary.state, 'COMPLETE');
        assert.equal(summary.value, storedByTell.value);
        assert.equal(stored[0]!.value, storedByTell.value);
      }
    });
  }
});

// The Temporal server stops while trials train: SIGTERM lets it shut down cleanly, SIGKILL is a crash.
for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  test(`server down (${signal}): training goes on`, { timeout: SERVER_DOWN_SECONDS * 1000 + OPTUNA_START_TO_CLOSE_MS + 120_000 }, async (t) => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpo-outage-'));
    // The restart reuses the port and the database file.
    const serverOptions = { dbFile: path.join(stateDir, 'temporal.db'), logFile: path.join(stateDir, 'server.log'), port: 0, uiPort: 0 };
    let server: DevServer = await inTurn(async () => {
      serverOptions.port = await freePort();
      serverOptions.uiPort = await freePort();
      return await startDevServer(serverOptions);
    });
    deferCleanup(t, () => server.stop());

    // The trainers outlast the outage by about 15 epochs of 1 s. The heartbeat timeout exceeds
    // the outage, because the server counts the time it was down against it.
    const epochs = SERVER_DOWN_SECONDS + 18;
    const study = makeStudy(t, {
      studyName: `outage-${signal.toLowerCase()}`,
      nTrials: 2,
      parallel: 2,
      epochs,
      epochSeconds: 1,
      execution: { heartbeat_timeout_seconds: SERVER_DOWN_SECONDS + 30 },
    });
    const studyWorker = await startWorkerProcess(t, 'study', study, { address: server.address, name: 'study' });
    const gpuWorker = await startWorkerProcess(t, 'gpu', study, { address: server.address, name: 'gpu', slots: 2 });

    const connection = await Connection.connect({ address: server.address });
    deferCleanup(t, () => connection.close());
    const client = new Client({ connection, namespace: 'default' });
    const { handle } = await startOrAttach(client, study.spec);

    const ids = [runId(0), runId(1)];
    await waitFor('both trials at epoch 2', () => (ids.every((id) => epochRows(study, id) >= 2) ? true : undefined), WAIT_MS, 100);
    // Stop in the middle of an epoch, once the reports of the new rows have reached Optuna: a report
    // cut by the outage is retried only after the Optuna activities' start-to-close timeout, a
    // delay that the killed-study-worker tests already show.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const trainers = ids.map((id) => startsOf(study, id)[0]!);
    const rowsAtStop = ids.map((id) => epochRows(study, id));

    if (signal === 'SIGTERM') {
      await server.stop();
    } else {
      const pid = server.pid!;
      process.kill(pid, 'SIGKILL');
      await waitFor(`dev server ${pid} to exit`, () => (isAlive(pid) ? undefined : true), WAIT_MS, 50);
    }
    // The threads of a killed server may still close its sockets after the process is reaped.
    await waitFor('the server to close its port', async () => ((await isPortOpen('127.0.0.1', serverOptions.port)) ? undefined : true), WAIT_MS, 50);
    const stoppedAt = Date.now();

    // While the server is down, trainers and workers keep running.
    while (Date.now() - stoppedAt < SERVER_DOWN_SECONDS * 1000) {
      for (const pid of trainers) assert.ok(processExists(pid), `trainer ${pid} died while the server was down`);
      assert.ok(studyWorker.running(), `the study worker exited while the server was down\n${logTail(studyWorker.logFile)}`);
      assert.ok(gpuWorker.running(), `the GPU worker exited while the server was down\n${logTail(gpuWorker.logFile)}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const rowsAtRestart = ids.map((id) => epochRows(study, id));
    for (const [i, id] of ids.entries()) {
      // The CSV kept growing: the trainer trained through the outage.
      assert.ok(rowsAtRestart[i]! > rowsAtStop[i]! + SERVER_DOWN_SECONDS / 2, `${id}: ${rowsAtStop[i]} rows at the stop, ${rowsAtRestart[i]} at the restart`);
      // Training must still be going on at the restart, or this test proves nothing about the trainers' activities.
      assert.ok(rowsAtRestart[i]! < epochs, `${id} finished training during the outage`);
    }

    server = await inTurn(() => startDevServer(serverOptions));
    assert.equal(server.owned, true, 'the test restarted its own server');
    const restartedAt = Date.now();
    const result = await studyResultWithin(handle, OPTUNA_START_TO_CLOSE_MS + 60_000);
    t.diagnostic(`server down ${restartedAt - stoppedAt} ms; study finished ${Date.now() - restartedAt} ms after the restart`);

    // The same worker processes reconnected by themselves.
    assert.ok(studyWorker.running(), `the study worker exited\n${logTail(studyWorker.logFile)}`);
    assert.ok(gpuWorker.running(), `the GPU worker exited\n${logTail(gpuWorker.logFile)}`);

    const stored = assertStudyInvariants(study, result);
    assert.deepEqual(stored.map((trial) => trial.state), ['COMPLETE', 'COMPLETE']);
    for (const trial of stored) {
      // The trainer that ran through the outage was the only run: no retry, no second start.
      assert.deepEqual(startsOf(study, runId(trial.number)), [trainers[trial.number]]);
      assert.equal(trial.userAttrs['hpo:attempts'], 1);
      // Epochs signalled while the server was down reached Optuna too.
      assertIntermediateValues(trial, epochs);
    }
  });
}

// Server, workers and trainers are killed at once, then the README's `hpo start` runs again.
test('node loss: hpo start again resumes', { timeout: OPTUNA_START_TO_CLOSE_MS + 150_000 }, async (t) => {
  const epochs = 5;
  const study = makeStudy(t, { studyName: 'node-loss-all', nTrials: 6, parallel: 2, epochs, epochSeconds: 0.6 });
  const port = await freePort();
  const uiPort = await freePort();
  const env = childEnv({
    HPO_DEV_SERVER_PORT: String(port),
    HPO_DEV_SERVER_UI_PORT: String(uiPort),
    HPO_PYTHON: PYTHON,
    HPO_HEARTBEAT_THROTTLE_MS: '500',
    HPO_POLL_INTERVAL_MS: '100',
    HPO_PROGRESS_INTERVAL_MS: '500',
    PATH: [VENV_BIN, process.env.PATH].join(path.delimiter),
  });
  const dbFile = path.join(study.projectDir, 'artifacts', 'temporal', 'temporal.db');
  const isEmbeddedServer = (info: ProcInfo) => info.cmdline.includes('start-dev') && info.cmdline.includes(dbFile);
  // The embedded server leads its own process group, so killing an `hpo start` leaves it running.
  deferCleanup(t, () => {
    for (const info of liveProcesses().filter(isEmbeddedServer)) process.kill(info.pid, 'SIGKILL');
  });
  const start = (name: string) => startHpoProcess(t, ['start', study.configPath], { cwd: study.projectDir, env, logFile: path.join(study.projectDir, `${name}.log`) });
  const liveTrainers = () => study.runs().filter((run) => isAlive(run.pid));

  const first = await start('start-1');
  await waitFor(
    'two finished trials and two trainers past their first epoch',
    () => {
      const finished = readOptunaStudy(study.spec).filter((trial) => trial.state === 'COMPLETE');
      const training = liveTrainers().filter((run) => epochRows(study, run.runId) >= 1);
      return finished.length >= 2 && training.length === 2 ? true : undefined;
    },
    WAIT_MS,
    250,
  );

  // The embedded server is a child of `hpo start`. The server and the trainers lead process
  // groups of their own, so the kill below names every group.
  const server = liveProcesses().find((info) => info.ppid === first.pid && isEmbeddedServer(info));
  assert.ok(server, `no dev server among the children of hpo start ${first.pid}`);
  const groups = [first.pid, server.pgrp];

  // A node loss: server, worker, bridge and trainers die at the same moment, without cleanup.
  const trainers = liveTrainers();
  groups.push(...trainers.map((run) => run.pid));
  for (const pgid of groups) signalProcessGroup(pgid, 'SIGKILL');
  await killGroup(first);
  for (const pgid of groups) await waitFor(`process group ${pgid} to end`, () => (liveGroupMembers(pgid).length === 0 ? true : undefined), WAIT_MS, 50);
  await waitFor('the embedded server to close its port', async () => ((await isPortOpen('127.0.0.1', port)) ? undefined : true), WAIT_MS, 50);
  const atKill = readOptunaStudy(study.spec);
  const interrupted = atKill.filter((trial) => trainers.some((run) => run.runId === runId(trial.number))).map((trial) => trial.number);
  assert.equal(interrupted.length, 2, `trainers killed: ${trainers.map((run) => run.runId).join(', ')}`);
  for (const number of interrupted) assert.equal(atKill[number]!.state, 'RUNNING', `trial ${number} at the kill`);

  const secondStartedAt = Date.now();
  const second = await start('start-2');
  // An Optuna call cut by the kill is retried after its start-to-close timeout, so allow for one.
  const exit = await exitWithin(second, OPTUNA_START_TO_CLOSE_MS + 60_000);
  t.diagnostic(`second hpo start ran ${Date.now() - secondStartedAt} ms`);
  assert.deepEqual(exit, { code: 0, signal: null }, `hpo start did not finish cleanly\n${logTail(second.logFile)}`);
  const output = fs.readFileSync(second.logFile, 'utf8');
  // The server's state file survived, so the second start found the study workflow still running.
  assert.match(output, /Attached to the running study node-loss-all/);

  const result = await storedStudyResult(study.projectDir, study.spec.studyName);
  const stored = assertStudyInvariants(study, result);
  // The running workflow kept its trials: nothing was marked interrupted and no trial was added.
  assert.deepEqual(stored.map((trial) => trial.number), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(stored.filter((trial) => trial.userAttrs['hpo:interrupted']).map((trial) => trial.number), []);
  assert.deepEqual(stored.map((trial) => trial.state), ['COMPLETE', 'COMPLETE', 'COMPLETE', 'COMPLETE', 'COMPLETE', 'COMPLETE']);

  // Trials finished before the kill are unchanged.
  for (const before of atKill.filter((trial) => trial.state === 'COMPLETE')) {
    assert.deepEqual(stored[before.number], before, `trial ${before.number} changed after the kill`);
  }

  for (const number of interrupted) {
    const trial = stored[number]!;
    // The killed training attempt timed out on its heartbeat and ran again on the new worker.
    assert.equal(startsOf(study, runId(number)).length, 2, `starts of ${runId(number)}`);
    assert.equal(trial.userAttrs['hpo:attempts'], 2, `attempts of trial ${number}`);
    assert.ok(fs.existsSync(`${runFolder(study, runId(number))}.old1`), `${runId(number)}.old1 holds the killed attempt's files`);
    assertIntermediateValues(trial, epochs);
  }
  for (const trial of stored.filter((trial) => !interrupted.includes(trial.number))) {
    assert.equal(trial.userAttrs['hpo:attempts'], 1, `attempts of trial ${trial.number}`);
  }
});
