/**
 * Measures how fast the orchestrator reacts, with a real dev server, real Optuna, GPU workers as
 * child processes and the fake pipeline:
 * - prune: epochs the pipeline still trains after the epoch the pruner stopped it at;
 * - node loss: seconds from SIGKILL of a GPU worker (and its trainer) to the trial's next run;
 * - preemption: seconds from SIGTERM of a GPU worker to the trial's next run on another worker.
 *
 * Run: npx tsx bench/recovery.ts [--repeats N] [--heartbeat-timeout S]
 * Results go to stdout as a table; docs/benchmarks.md records them with the machine they ran on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startOrAttach } from '../src/client/start';
import { createHpoWorkers } from '../src/worker/workers';
import { trialWorkflowId } from '../src/workflows/ids';
import { trialProgressQuery } from '../src/workflows/messages';
import { makeFakeStudy, readOptunaStudy, type FakeStudy } from '../test/helpers/fakeStudy';
import { killAllWorkerProcesses, killProcessGroupIfOwned, startGpuWorkerProcess, waitFor } from '../test/helpers/processes';
import { startTestTemporal, type TestTemporal } from '../test/helpers/temporal';

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '3' },
    'heartbeat-timeout': { type: 'string', default: '10' },
  },
});
const repeats = Number(values.repeats);
const heartbeatTimeout = Number(values['heartbeat-timeout']);

async function withStudyWorker<T>(temporal: TestTemporal, body: () => Promise<T>): Promise<T> {
  const workers = await createHpoWorkers({ connection: temporal.nativeConnection, namespace: 'default', study: true, gpu: null, workflowBundle: temporal.bundle });
  const running = workers.run();
  try {
    return await body();
  } finally {
    workers.shutdown();
    await running;
  }
}

function startWorker(temporal: TestTemporal, study: FakeStudy, name: string) {
  return startGpuWorkerProcess({
    address: temporal.address,
    taskQueue: study.spec.execution.taskQueue,
    slots: 2,
    logFile: path.join(study.projectDir, `worker-${name}.log`),
  });
}

async function waitForEpoch(temporal: TestTemporal, study: FakeStudy, epoch: number): Promise<void> {
  const handle = temporal.client.workflow.getHandle(trialWorkflowId(study.spec.studyName, 0));
  await waitFor(`epoch ${epoch}`, async () => ((await handle.query(trialProgressQuery)).lastEpoch >= epoch ? true : undefined), 60_000, 100);
}

/** Epochs written after the pruned step, for trials the ThresholdPruner stops at epoch 3. */
async function measurePrune(temporal: TestTemporal, index: number): Promise<number> {
  const study = makeFakeStudy({
    studyName: `bench-prune-${index}`,
    nTrials: 1,
    epochs: 30,
    epochSeconds: 0.5,
    qualities: [0.1],
    pruner: { name: 'ThresholdPruner', lower: 0.5, n_warmup_steps: 2 },
  });
  const worker = await startWorker(temporal, study, 'a');
  try {
    await withStudyWorker(temporal, async () => (await startOrAttach(temporal.client, study.spec)).handle.result());
  } finally {
    worker.signal('SIGTERM');
    await worker.exited;
  }
  const [trial] = readOptunaStudy(study.spec);
  const prunedAt = Math.max(...Object.keys(trial!.intermediate).map(Number));
  const csv = path.join(study.spec.execution.workdir, 'logs', 'fake', 'train', 'test_t0000', 'training_step.csv');
  const written = fs.readFileSync(csv, 'utf8').trim().split('\n').length - 1;
  return written - prunedAt;
}

/** Seconds from the signal to the trial's second pipeline start. */
async function measureRestart(temporal: TestTemporal, index: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<number> {
  const study = makeFakeStudy({
    studyName: `bench-${signal.toLowerCase()}-${index}`,
    nTrials: 1,
    epochs: 12,
    epochSeconds: 0.5,
    execution: { heartbeat_timeout_seconds: heartbeatTimeout },
  });
  return await withStudyWorker(temporal, async () => {
    const first = await startWorker(temporal, study, 'a');
    const { handle } = await startOrAttach(temporal.client, study.spec);
    await waitForEpoch(temporal, study, 2);

    const signalledAt = Date.now();
    first.signal(signal);
    if (signal === 'SIGKILL') {
      for (const run of study.runs()) killProcessGroupIfOwned(run.pid, study.projectDir);
    }
    await startWorker(temporal, study, 'b');
    const restartedAt = await waitFor('second run', () => (study.runs().length >= 2 ? Date.now() : undefined), 120_000, 50);
    await handle.result();
    await killAllWorkerProcesses();
    return (restartedAt - signalledAt) / 1000;
  });
}

function summarize(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(2)}, min ${sorted[0]!.toFixed(2)}, max ${sorted[sorted.length - 1]!.toFixed(2)} (n=${samples.length})`;
}

async function main(): Promise<void> {
  const temporal = await startTestTemporal('bench');
  try {
    const prune: number[] = [];
    const nodeLoss: number[] = [];
    const preemption: number[] = [];
    for (let i = 0; i < repeats; i++) {
      prune.push(await measurePrune(temporal, i));
      nodeLoss.push(await measureRestart(temporal, i, 'SIGKILL'));
      preemption.push(await measureRestart(temporal, i, 'SIGTERM'));
    }
    console.log(`| measure | result |`);
    console.log(`| --- | --- |`);
    console.log(`| epochs trained after the prune decision (0.5 s epochs) | ${summarize(prune)} |`);
    console.log(`| node loss (SIGKILL) to re-run, heartbeat timeout ${heartbeatTimeout} s | ${summarize(nodeLoss)} s |`);
    console.log(`| preemption (SIGTERM) to re-run | ${summarize(preemption)} s |`);
  } finally {
    await killAllWorkerProcesses();
    await temporal.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
