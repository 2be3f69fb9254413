/**
 * Builds the two kinds of worker a study needs:
 * - the study worker (task queue `hpo-study`): study and trial workflows, and the Optuna activities
 *   through this worker's bridge process;
 * - the GPU worker (the config's `execution.task_queue`): the training activity, one slot per GPU.
 * One process may run both, as the quickstart does; on a cluster, each GPU node runs a GPU worker.
 */
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import type { WorkflowBundle } from '@temporalio/worker';
import { createStudyActivities } from '../activities/studyActivities';
import { createTrainingActivities, defaultWorkerIdentity } from '../activities/training';
import { GpuSlots } from '../activities/gpuSlots';
import { OptunaBridge, bridgePython } from '../activities/optunaBridge';
import { STUDY_TASK_QUEUE } from '../common/taskQueues';

export interface GpuWorkerOptions {
  taskQueue: string;
  /** Training runs at once on this worker. */
  slots: number;
  /** Device ids handed out through CUDA_VISIBLE_DEVICES, one per run; empty leaves it unset. */
  gpus: string[];
}

export interface HpoWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  study: boolean;
  gpu: GpuWorkerOptions | null;
  /** A prebuilt workflow bundle (tests build one per suite); by default the workflows are bundled at start. */
  workflowBundle?: WorkflowBundle;
  /** How often a training run's heartbeat reaches the server, at most; it bounds how fast a prune lands. */
  heartbeatThrottleMs?: number;
  pollIntervalMs?: number;
  /** Time the GPU worker gives its trainers to stop on shutdown, before the SDK gives up on them. */
  shutdownForceMs?: number;
  identity?: string;
}

export interface HpoWorkers {
  workers: Worker[];
  bridge: OptunaBridge | null;
  /** Resolves when every worker has stopped; rejects with the first worker's fatal error. */
  run(): Promise<void>;
  shutdown(): void;
}

/** Reads a positive number of milliseconds from the environment (tuning knobs for tests and benchmarks). */
function envMs(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number of milliseconds, but got ${raw}`);
  return value;
}

export async function createHpoWorkers(options: HpoWorkerOptions): Promise<HpoWorkers> {
  const logger = Runtime.instance().logger;
  const workers: Worker[] = [];
  let bridge: OptunaBridge | null = null;

  if (options.study) {
    bridge = new OptunaBridge(bridgePython(), logger);
    // Fails here, before any workflow runs, when optuna is missing.
    const info = await bridge.start();
    const identity = options.identity ?? defaultWorkerIdentity('study');
    const workflowSource: Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> = options.workflowBundle
      ? { workflowBundle: options.workflowBundle }
      : { workflowsPath: require.resolve('../workflows') };
    workers.push(
      await Worker.create({
        connection: options.connection,
        namespace: options.namespace,
        taskQueue: STUDY_TASK_QUEUE,
        identity,
        ...workflowSource,
        activities: createStudyActivities(bridge),
      }),
    );
    logger.info('Study worker created', { taskQueue: STUDY_TASK_QUEUE, identity, optuna: info.optunaVersion, python: info.python });
  }

  if (options.gpu) {
    const { taskQueue, slots, gpus } = options.gpu;
    const identity = options.identity ?? defaultWorkerIdentity('gpu');
    const throttleMs = options.heartbeatThrottleMs ?? envMs('HPO_HEARTBEAT_THROTTLE_MS') ?? 5000;
    workers.push(
      await Worker.create({
        connection: options.connection,
        namespace: options.namespace,
        taskQueue,
        identity,
        activities: createTrainingActivities({
          pollIntervalMs: options.pollIntervalMs ?? envMs('HPO_POLL_INTERVAL_MS') ?? 1000,
          heartbeatIntervalMs: throttleMs,
          gpuSlots: gpus.length > 0 ? new GpuSlots(gpus) : null,
          workerIdentity: identity,
        }),
        maxConcurrentActivityTaskExecutions: gpus.length > 0 ? Math.min(slots, gpus.length) : slots,
        maxHeartbeatThrottleInterval: throttleMs,
        defaultHeartbeatThrottleInterval: throttleMs,
        // On shutdown (SIGTERM from SLURM, Ctrl-C) cancel the runs at once: each stops its process
        // group and fails retryably, so the trial re-runs elsewhere without a heartbeat timeout.
        shutdownGraceTime: '1 second',
        shutdownForceTime: options.shutdownForceMs ?? 90_000,
      }),
    );
    logger.info('GPU worker created', { taskQueue, identity, slots, gpus });
  }

  if (workers.length === 0) throw new Error('no worker role selected: choose the study role, the GPU role, or both');

  return {
    workers,
    bridge,
    async run() {
      try {
        await Promise.all(workers.map((w) => w.run()));
      } finally {
        await bridge?.close();
        logger.info('Workers stopped', { count: workers.length });
      }
    },
    shutdown() {
      for (const worker of workers) {
        if (worker.getState() === 'RUNNING') worker.shutdown();
      }
    },
  };
}
