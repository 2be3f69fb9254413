/**
 * `hpo start <config>`: validates the config, connects to Temporal (the embedded dev server unless
 * the environment names one), runs a worker in this process when there is no cluster, starts the
 * study workflow or attaches to the running one, and shows progress until the study ends.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection, WorkflowIdReusePolicy, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type LogEntry } from '@temporalio/worker';
import type { StudySpec } from '../common/types';
import { STUDY_TASK_QUEUE } from '../common/taskQueues';
import { loadStudySpec, searchSpaceFingerprint } from '../config';
import { createHpoWorkers, type HpoWorkers } from '../worker/workers';
import { studyWorkflowId } from '../workflows/ids';
import { studyProgressQuery } from '../workflows/messages';
import type { StudyResult, studyWorkflow } from '../workflows/study';
import { killAllPipelines } from '../activities/pipelineProcess';
import { configuredServer, connectClient, connectWorker, resolveTemporal, type TemporalTarget } from './connection';
import { fetchProgress, formatValue, ProgressPrinter, withTimeout } from './progress';
import { UsageError } from './errors';

export interface StartFlags {
  skipFinalFullPipeline: boolean;
  detach: boolean;
  /** Run a worker in this process; default: only when the embedded server is used. */
  worker: boolean | null;
  verbose: boolean;
  pollIntervalMs: number;
}

/** Sends the SDK's log lines to a file, so the terminal shows the study's progress only. */
export function installFileLogger(logFile: string, alsoConsole: boolean): void {
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const stream = fs.createWriteStream(logFile, { flags: 'a' });
  const logger = new DefaultLogger('INFO', (entry: LogEntry) => {
    const line = `${new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString()} [${entry.level}] ${entry.message} ${JSON.stringify(entry.meta ?? {})}\n`;
    stream.write(line);
    if (alsoConsole) process.stderr.write(line);
  });
  // Forward the SDK core's own log lines (Rust side) to the same file instead of stderr.
  Runtime.install({ logger, telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } } });
}

export async function startOrAttach(client: Client, spec: StudySpec): Promise<{ handle: WorkflowHandle<typeof studyWorkflow>; attached: boolean }> {
  const workflowId = studyWorkflowId(spec.studyName);
  const existing = client.workflow.getHandle<typeof studyWorkflow>(workflowId);
  let running = false;
  try {
    running = (await existing.describe()).status.name === 'RUNNING';
  } catch (error) {
    if ((error as Error).name !== 'WorkflowNotFoundError') throw error;
  }

  if (running) {
    const progress = await withTimeout(existing.query(studyProgressQuery), 15_000);
    if (progress && searchSpaceFingerprint(progress.searchSpace) !== searchSpaceFingerprint(spec.searchSpace)) {
      throw new UsageError(
        `study ${spec.studyName} is running with another search space than ${spec.configPath}. ` +
          `Stop it first (npx hpo stop ${spec.studyName}) or give the new search a new optimization.study_name.`,
      );
    }
    return { handle: existing, attached: true };
  }

  const handle = await client.workflow.start<typeof studyWorkflow>('studyWorkflow', {
    workflowId,
    taskQueue: STUDY_TASK_QUEUE,
    args: [{ spec }],
    // A finished study started again continues from the Optuna storage (its budget may be met).
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: `HPO study ${spec.studyName}: ${spec.nTrials} trials, ${spec.direction} ${spec.objectiveMetric}`,
  });
  return { handle, attached: false };
}

export function printResult(result: StudyResult, spec: StudySpec, uiUrl: string | null, namespace: string, workflowId: string): void {
  const out = (line = '') => process.stdout.write(line + '\n');
  const states = Object.entries(result.states)
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
  out();
  out(`Study ${result.studyName} finished: ${result.counted} of ${result.nTrials} trials (${states || 'none'})${result.stop ? `, stopped (${result.stop})` : ''}.`);
  if (result.warning) out(`Warning: ${result.warning}`);
  if (result.best) {
    out(`Best value (${spec.objectiveMetric}, ${spec.direction}): ${formatValue(result.best.value)} in trial ${result.best.number} (run id ${result.best.runId ?? '-'})`);
    out('Best parameters:');
    for (const [name, value] of Object.entries(result.best.params)) out(`  ${name}: ${JSON.stringify(value)}`);
  } else {
    out('Best value: none (no trial completed)');
  }
  const failed = result.trials.filter((t) => t.state === 'FAIL');
  if (failed.length > 0) {
    out(`Failed trials (${failed.length}):`);
    for (const trial of failed.slice(0, 10)) out(`  trial ${trial.number}: ${trial.reason ?? 'no reason recorded'}`);
    if (failed.length > 10) out(`  ... and ${failed.length - 10} more: npx hpo status ${result.studyName}`);
  }
  out('Artifacts:');
  out(`  trials:      ${path.relative(process.cwd(), result.trialsCsv) || result.trialsCsv}`);
  out(`  best params: ${path.relative(process.cwd(), result.bestParamsYaml) || result.bestParamsYaml}`);
  out(`  Optuna storage: ${spec.storage.kind === 'url' ? spec.storage.url : `journal file ${spec.storage.path}`} (study ${result.studyName})`);
  if (result.finalRun) {
    out(`  final full-pipeline run: ${result.finalRun.end}, run id ${result.finalRun.trainRunId}${result.finalRun.reason ? ` (${result.finalRun.reason})` : ''}`);
  }
  out(`Temporal web UI: ${uiUrl ? `${uiUrl}/namespaces/${namespace}/workflows/${workflowId}` : `workflow ${workflowId} in namespace ${namespace}`}`);
}

export async function startCommand(configPath: string, flags: StartFlags): Promise<number> {
  const projectDir = process.cwd();
  const { spec, notices } = loadStudySpec(configPath, { projectDir, skipFinalFullPipeline: flags.skipFinalFullPipeline });
  for (const notice of notices) process.stdout.write(`note: ${notice}\n`);

  // The embedded server means a local run, so the worker runs here and the command must run here.
  const runWorker = flags.worker ?? configuredServer() === null;
  if (runWorker) checkPipelineCommand(spec);

  const target = await resolveTemporal({ projectDir, startEmbedded: 'always' });
  const logFile = path.join(projectDir, 'artifacts', 'hpo', spec.studyName, 'worker.log');
  installFileLogger(logFile, flags.verbose);

  const where = target.embedded
    ? `embedded Temporal server ${target.embedded.address}${target.embedded.owned ? ` (state in artifacts/temporal/)` : ' (already running)'}`
    : `Temporal server ${target.connectionOptions.address}, namespace ${target.namespace}`;
  process.stdout.write(`Using ${where}.\n`);

  let workers: HpoWorkers | null = null;
  let workersDone: Promise<void> | null = null;
  let nativeConnection: NativeConnection | null = null;
  let connection: Connection | null = null;
  try {
    if (runWorker) {
      nativeConnection = await connectWorker(target);
      workers = await createHpoWorkers({
        connection: nativeConnection,
        namespace: target.namespace,
        study: true,
        gpu: { taskQueue: spec.execution.taskQueue, slots: spec.execution.parallelTrials, gpus: gpuListFromEnv() },
      });
      workersDone = workers.run();
      process.stdout.write(`Worker started in this process (log: ${path.relative(projectDir, logFile)}).\n`);
    }

    connection = await connectClient(target);
    const client = new Client({ connection, namespace: target.namespace });
    const { handle, attached } = await startOrAttach(client, spec);
    process.stdout.write(`${attached ? 'Attached to the running' : 'Started'} study ${spec.studyName} (workflow ${handle.workflowId}).\n`);
    if (target.uiUrl) process.stdout.write(`Web UI: ${target.uiUrl}/namespaces/${target.namespace}/workflows/${handle.workflowId}\n`);

    if (flags.detach) {
      if (runWorker) process.stdout.write('Detached: no worker runs the study once this command exits; start one with npx hpo worker.\n');
      return 0;
    }

    const outcome = await watch(client, handle, spec, flags.pollIntervalMs, workersDone, () => forceExit(target));
    if (outcome === 'interrupted') {
      process.stdout.write(`\nStopped watching. The study is saved; run the same command again to continue it.\n`);
      if (runWorker) process.stdout.write('Stopping the worker: it stops its trainers and hands their trials back (Ctrl-C again exits at once).\n');
      return 130;
    }
    printResult(outcome, spec, target.uiUrl, target.namespace, handle.workflowId);
    // A study in which no trial completed has no result to use, so the exit status reports it too.
    return outcome.best === null && outcome.counted > 0 ? 1 : 0;
  } finally {
    workers?.shutdown();
    await workersDone?.catch((error: Error) => process.stderr.write(`worker stopped with an error: ${error.message}\n`));
    await connection?.close();
    await nativeConnection?.close();
    await target.embedded?.stop();
  }
}

/** Exits at once on a second Ctrl-C: kills this process's trainers and embedded server first. */
function forceExit(target: TemporalTarget): never {
  const killed = killAllPipelines();
  if (target.embedded?.owned && target.embedded.pid !== null) {
    try {
      process.kill(-target.embedded.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  process.stderr.write(`\nExiting at once; killed ${killed.length} trainer(s). Their trials run again when the study continues.\n`);
  process.exit(130);
}

/**
 * Checks that the pipeline command can start on this machine, so a typo in
 * `execution.command` fails before any trial does.
 */
export function checkPipelineCommand(spec: StudySpec): void {
  const [executable] = spec.execution.command;
  if (!fs.existsSync(spec.execution.workdir) || !fs.statSync(spec.execution.workdir).isDirectory()) {
    throw new UsageError(`optimization.execution.workdir: folder not found: ${spec.execution.workdir}. Point it at the pipeline's root folder.`);
  }
  if (!executable) return;
  const candidates = executable.includes('/')
    ? [path.resolve(spec.execution.workdir, executable)]
    : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, executable));
  const found = candidates.some((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  });
  if (!found) {
    const where = executable.includes('/') ? `at ${candidates[0]}` : `on PATH (${process.env.PATH ?? 'unset'})`;
    throw new UsageError(
      `optimization.execution.command[0]: executable "${executable}" not found ${where}. ` +
        'Give its absolute path, or run from an environment whose PATH has it (./scripts/hpo_optuna.sh puts .venv/bin first).',
    );
  }
}

/** GPUs for the in-process worker: the ids in CUDA_VISIBLE_DEVICES, one training run each. */
export function gpuListFromEnv(): string[] {
  const visible = process.env.CUDA_VISIBLE_DEVICES;
  if (!visible || visible.trim() === '' || visible.trim() === '-1') return [];
  return visible.split(',').map((id) => id.trim()).filter(Boolean);
}

async function watch(
  client: Client,
  handle: WorkflowHandle<typeof studyWorkflow>,
  spec: StudySpec,
  pollIntervalMs: number,
  workersDone: Promise<void> | null,
  onSecondInterrupt: () => void,
): Promise<StudyResult | 'interrupted'> {
  const printer = new ProgressPrinter((line) => process.stdout.write(line + '\n'), spec.objectiveMetric);
  let finished = false;
  const result = handle.result().finally(() => {
    finished = true;
  });
  let interrupted = false;
  const stopWatching = () => {
    if (interrupted) {
      onSecondInterrupt();
      return;
    }
    interrupted = true;
  };
  // Kept after the watch ends, so a second Ctrl-C during the worker's shutdown still works.
  process.on('SIGINT', stopWatching);
  process.on('SIGTERM', stopWatching);
  void workersDone?.finally(() => {
    interrupted = true;
  });

  try {
    while (!finished && !interrupted) {
      try {
        const { study, trials } = await fetchProgress(client, handle);
        printer.update(study, trials);
      } catch {
        // The workflow may be between runs (continue-as-new) or its worker restarting.
      }
      await Promise.race([new Promise((resolve) => setTimeout(resolve, pollIntervalMs)), result.catch(() => undefined)]);
    }
  } finally {
    if (!interrupted) {
      process.removeListener('SIGINT', stopWatching);
      process.removeListener('SIGTERM', stopWatching);
    }
  }
  if (interrupted && !finished) return 'interrupted';
  return await result;
}
