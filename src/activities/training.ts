/**
 * The training activity: runs one pipeline run of a trial (or the final full-pipeline run) on a
 * GPU worker, tails its training_step.csv, heartbeats the latest epoch and objective value, and
 * signals every new epoch to the trial workflow so the pruner can stop the trial while it trains.
 *
 * How a run ends is returned, not thrown, when the pipeline caused it (completed, out of memory,
 * failed, stalled): the trial workflow decides what that means for the trial. Only failures of
 * the infrastructure are thrown, so that Temporal's retry policy re-runs them on another worker.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Context, ApplicationFailure, CancelledFailure, log } from '@temporalio/activity';
import type { StudySpec } from '../common/types';
import { buildFinalConfig, buildTrialConfig } from '../config';
import { epochReportedSignal, type ReportedValue } from '../workflows/messages';
import { classifyExit, type RunEnd } from './failureKinds';
import { PipelineProcess, readLogTail } from './pipelineProcess';
import { stringifyForPipeline } from './pipelineYaml';
import { PIPELINE_START_FAILURE, WORKER_SHUTDOWN_FAILURE } from './failureTypes';
import { GpuSlots } from './gpuSlots';
import { bestValue, TrainingLogFormatError, TrainingLogTail, type EpochRow } from './trainingLog';

export interface TrainingInput {
  spec: StudySpec;
  /** Actual Optuna study name (derived when the search space changed). */
  studyName: string;
  kind: 'trial' | 'final';
  /** Trial number; for the final run, the number of the best trial whose parameters it uses. */
  trialNumber: number;
  params: Record<string, unknown>;
  /** Pipeline run of this trial, from 1; a new run starts after an out-of-memory retry. */
  run: number;
  /** Workflow that receives `epochReportedSignal`, or null to report nothing. */
  reportTo: string | null;
}

export interface TrainingResult {
  end: RunEnd | 'stalled';
  reason: string | null;
  /** Best value of the objective column over all epochs, or null when there is none. */
  value: ReportedValue;
  epochs: Array<{ epoch: number; value: ReportedValue }>;
  attempt: number;
  runId: string;
  logPath: string;
  trainingCsv: string;
}

export interface TrainingOptions {
  /** How often the CSV is read and the trainer checked. */
  pollIntervalMs: number;
  /** How often a heartbeat is recorded; the worker's throttle decides how often it is sent. */
  heartbeatIntervalMs: number;
  gpuSlots: GpuSlots | null;
  workerIdentity: string;
}

const LOG_TAIL_LINES = 30;

/** Retries of one epoch signal, about 10 minutes with the backoff below. */
const SIGNAL_RETRIES = 45;


export function encodeValue(value: number | null): ReportedValue {
  if (value === null) return null;
  if (Number.isNaN(value)) return 'nan';
  if (value === Infinity) return 'inf';
  if (value === -Infinity) return '-inf';
  return value;
}

/** Paths of one pipeline run; the pipeline's own folders follow the contract `logs/<model>/train/<run_id>`. */
export function runPaths(spec: StudySpec, config: Record<string, unknown>, runId: string, trialFolder: string, run: number, attempt: number) {
  // The trial's own config: a search over model_config.model changes the folder too.
  const model = String((config.model_config as Record<string, unknown> | undefined)?.model ?? 'model');
  const workdir = spec.execution.workdir;
  return {
    configPath: path.join(trialFolder, `config.run${run}.yaml`),
    logPath: path.join(trialFolder, `pipeline.run${run}.attempt${attempt}.log`),
    trainingCsv: path.join(workdir, 'logs', model, 'train', runId, 'training_step.csv'),
    runFolders: [path.join(workdir, 'logs', model, 'train', runId), path.join(workdir, 'models', model, 'train', runId)],
  };
}

/** Moves the folders of an earlier run aside, so a new attempt starts clean and the old one stays readable. */
export function moveRunFoldersAside(folders: string[]): string[] {
  const moved: string[] = [];
  for (const folder of folders) {
    if (!fs.existsSync(folder)) continue;
    let n = 1;
    while (fs.existsSync(`${folder}.old${n}`)) n++;
    fs.renameSync(folder, `${folder}.old${n}`);
    moved.push(`${folder}.old${n}`);
  }
  return moved;
}

function writeFileAtomically(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

export function pipelineArgv(command: string[], configPath: string): string[] {
  return command.map((arg) => arg.split('{config}').join(configPath));
}

export function createTrainingActivities(options: TrainingOptions) {
  return {
    async runTraining(input: TrainingInput): Promise<TrainingResult> {
      const ctx = Context.current();
      const attempt = ctx.info.attempt;
      const { spec } = input;

      const built =
        input.kind === 'trial'
          ? (() => {
              const trial = buildTrialConfig(spec, input.params, input.trialNumber);
              return { config: trial.config, runId: trial.runId };
            })()
          : (() => {
              const final = buildFinalConfig(spec, input.params);
              return { config: final.config, runId: final.trainRunId };
            })();
      const trialFolder = path.join(spec.artifactDir, 'trials', input.kind === 'trial' ? `t${String(input.trialNumber).padStart(4, '0')}` : 'final');
      const paths = runPaths(spec, built.config, built.runId, trialFolder, input.run, attempt);
      const ids = { study: input.studyName, trial: input.trialNumber, kind: input.kind, run: input.run, attempt, runId: built.runId, worker: options.workerIdentity };

      writeFileAtomically(paths.configPath, stringifyForPipeline(built.config));
      const moved = moveRunFoldersAside(paths.runFolders);
      if (moved.length > 0) log.info('Moved the folders of an earlier run aside', { ...ids, moved });

      const gpu = options.gpuSlots ? await options.gpuSlots.acquire(ctx.cancellationSignal) : null;
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PYTHONPATH: [spec.execution.workdir, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
        PYTHONUNBUFFERED: '1',
        HPO_STUDY: input.studyName,
        HPO_TRIAL_NUMBER: String(input.trialNumber),
        HPO_RUN_ID: built.runId,
      };
      if (gpu !== null) env.CUDA_VISIBLE_DEVICES = gpu;
      // A Temporal Cloud API key is the worker's secret, never the pipeline's.
      delete env.TEMPORAL_API_KEY;

      try {
        return await superviseRun({ input, ids, paths, env, attempt, runId: built.runId, options });
      } finally {
        if (gpu !== null) options.gpuSlots?.release(gpu);
      }
    },
  };
}

interface SuperviseArgs {
  input: TrainingInput;
  ids: Record<string, unknown>;
  paths: ReturnType<typeof runPaths>;
  env: NodeJS.ProcessEnv;
  attempt: number;
  runId: string;
  options: TrainingOptions;
}

async function superviseRun(args: SuperviseArgs): Promise<TrainingResult> {
  const { input, ids, paths, env, attempt, runId, options } = args;
  const ctx = Context.current();
  const { spec } = input;
  const graceMs = spec.execution.killGraceSeconds * 1000;
  const stallMs = spec.execution.stallTimeoutMinutes === null ? null : spec.execution.stallTimeoutMinutes * 60_000;

  const argv = pipelineArgv(spec.execution.command, paths.configPath);
  let proc: PipelineProcess;
  try {
    proc = await PipelineProcess.start({ argv, cwd: spec.execution.workdir, env, logPath: paths.logPath });
  } catch (error) {
    // A command that cannot start fails the same way on every worker. Messages about the
    // executable already begin with "cannot start the pipeline", but those about the workdir do not.
    const message = (error as Error).message;
    const reason = message.startsWith('cannot start the pipeline') ? message : `cannot start the pipeline: ${message}`;
    throw ApplicationFailure.nonRetryable(reason, PIPELINE_START_FAILURE);
  }
  log.info('Pipeline started', { ...ids, pid: proc.pid, argv, cwd: spec.execution.workdir, log: paths.logPath });

  const tail = new TrainingLogTail(paths.trainingCsv, spec.objectiveColumn);
  let lastProgressAt = Date.now();
  let lastHeartbeatAt = 0;
  let latest: EpochRow | null = null;
  let reportChain: Promise<void> = Promise.resolve();
  let exited = false;
  let wake: () => void = () => undefined;
  void proc.exited.then(() => {
    exited = true;
    wake();
  });
  const onCancel = () => wake();
  ctx.cancellationSignal.addEventListener('abort', onCancel);
  // Wait for the next poll, the pipeline's exit or a cancellation, whichever comes first, without
  // piling up promise reactions over a run that may last days.
  const nextTick = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, options.pollIntervalMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const heartbeat = () => {
    ctx.heartbeat({
      attempt,
      run: input.run,
      runId,
      epoch: latest?.epoch ?? 0,
      [spec.objectiveColumn]: latest ? encodeValue(latest.value) : null,
      pid: proc.pid,
      worker: options.workerIdentity,
    });
    lastHeartbeatAt = Date.now();
  };

  const reportEpochs = (rows: EpochRow[]) => {
    if (!input.reportTo || rows.length === 0) return;
    const handle = ctx.client.workflow.getHandle(input.reportTo);
    // Signals go out in epoch order, one after another. A failed signal (the server is down) is
    // retried, so the pruner gets every epoch; the workflow also reports the result's epochs again
    // before it tells Optuna, in case a run ends before its signals got through.
    reportChain = reportChain.then(async () => {
      for (const row of rows) {
        const report = {
          trialNumber: input.trialNumber,
          attempt,
          run: input.run,
          epoch: row.epoch,
          value: encodeValue(row.value),
          workerIdentity: options.workerIdentity,
        };
        for (let retry = 0; ; retry++) {
          try {
            await handle.signal(epochReportedSignal, report);
            break;
          } catch (error) {
            const gone = (error as Error).name === 'WorkflowNotFoundError';
            log.warn('Could not signal an epoch to the trial workflow', { ...ids, epoch: row.epoch, retry, error: (error as Error).message });
            if (gone || retry >= SIGNAL_RETRIES || ctx.cancellationSignal.aborted) break;
            await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** retry, 15_000)));
          }
        }
      }
    });
  };

  const pollOnce = async (final: boolean): Promise<void> => {
    const rows = await tail.poll({ final });
    if (rows.length > 0) {
      latest = rows[rows.length - 1]!;
      lastProgressAt = Date.now();
      for (const row of rows) log.info('Epoch finished', { ...ids, epoch: row.epoch, [spec.objectiveColumn]: row.value });
      reportEpochs(rows);
      heartbeat();
    }
  };

  let stalled = false;
  let columnError: TrainingLogFormatError | null = null;
  try {
    heartbeat();
    while (!exited) {
      await nextTick();
      if (ctx.cancellationSignal.aborted) await ctx.cancelled;
      if (exited) break;
      try {
        await pollOnce(false);
      } catch (error) {
        if (!(error instanceof TrainingLogFormatError)) throw error;
        columnError = error;
        log.error('training_step.csv cannot be used; stopping the pipeline', { ...ids, error: error.message });
        await proc.stop(graceMs);
        break;
      }
      if (Date.now() - lastHeartbeatAt >= options.heartbeatIntervalMs) heartbeat();

      const quietSince = Math.max(lastProgressAt, proc.lastOutputAt());
      if (stallMs !== null && Date.now() - quietSince > stallMs) {
        stalled = true;
        log.error('Pipeline stalled: no new epoch and no log output; stopping it', { ...ids, stallMinutes: spec.execution.stallTimeoutMinutes });
        await proc.stop(graceMs);
        break;
      }
    }
  } catch (error) {
    ctx.cancellationSignal.removeEventListener('abort', onCancel);
    if (error instanceof CancelledFailure) {
      const details = ctx.cancellationDetails;
      log.info('Training cancelled; stopping the pipeline', { ...ids, pid: proc.pid, workerShutdown: details?.workerShutdown ?? false });
      await proc.stop(graceMs);
      await reportChain;
      if (details?.workerShutdown) {
        // Hand the trial back at once instead of waiting for the heartbeat timeout. Non-retryable,
        // so the trial workflow starts a new run that does not use up execution.max_attempts:
        // preemptions are routine on a cluster, not failures.
        throw ApplicationFailure.nonRetryable(`worker ${options.workerIdentity} is shutting down`, WORKER_SHUTDOWN_FAILURE);
      }
      throw error;
    }
    await proc.stop(graceMs);
    throw error;
  }

  ctx.cancellationSignal.removeEventListener('abort', onCancel);
  const exit = await proc.exited;
  if (!columnError) {
    try {
      await pollOnce(true);
    } catch (error) {
      if (!(error instanceof TrainingLogFormatError)) throw error;
      columnError = error;
    }
  }
  await reportChain;

  const logTail = await readLogTail(paths.logPath, LOG_TAIL_LINES);
  const rows = tail.rows();
  const epochs = rows.map((row) => ({ epoch: row.epoch, value: encodeValue(row.value) }));
  const base = { attempt, runId, logPath: paths.logPath, trainingCsv: paths.trainingCsv, epochs };

  if (columnError) {
    return { ...base, end: 'failed', reason: columnError.message, value: null };
  }
  if (stalled) {
    const reason = `stalled: no new epoch and no log output for ${spec.execution.stallTimeoutMinutes} minutes`;
    return { ...base, end: 'stalled', reason, value: encodeValue(bestValue(rows, spec.direction)) };
  }

  const classified = classifyExit(exit, logTail);
  log.info('Pipeline exited', { ...ids, code: exit.code, signal: exit.signal, end: classified.end, epochs: rows.length });
  if (classified.end === 'completed') {
    if (!tail.exists()) {
      return { ...base, end: 'failed', reason: `the pipeline exited 0 but wrote no ${paths.trainingCsv}`, value: null };
    }
    const value = bestValue(rows, spec.direction);
    if (value === null) {
      return { ...base, end: 'failed', reason: `no value in column '${spec.objectiveColumn}' of ${paths.trainingCsv}`, value: null };
    }
    return { ...base, end: 'completed', reason: null, value: encodeValue(value) };
  }
  return { ...base, end: classified.end, reason: classified.reason, value: encodeValue(bestValue(rows, spec.direction)) };
}

export function defaultWorkerIdentity(role: string): string {
  const job = process.env.SLURM_JOB_ID ? `:slurm-${process.env.SLURM_JOB_ID}` : '';
  return `${role}@${os.hostname()}:${process.pid}${job}`;
}

export type TrainingActivities = ReturnType<typeof createTrainingActivities>;
