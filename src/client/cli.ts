/**
 * The `hpo` command line: start, worker, status, stop, budget and server.
 * Exit status: 0 done, 1 failed, 2 invalid input (config or arguments), 130 interrupted.
 */
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DEFAULT_GPU_TASK_QUEUE } from '../common/taskQueues';
import { createHpoWorkers } from '../worker/workers';
import { studyWorkflowId } from '../workflows/ids';
import { setTrialBudgetUpdate, stopStudySignal } from '../workflows/messages';
import { OptunaBridge, bridgePython } from '../activities/optunaBridge';
import { connectWorker, resolveTemporal, withClient } from './connection';
import { startDevServer, DEFAULT_DEV_SERVER_PORT, DEFAULT_DEV_SERVER_UI_PORT } from './devServer';
import { UsageError } from './errors';
import { gpuListFromEnv, startCommand } from './start';
import { statusCommand } from './status';
import * as path from 'node:path';

const USAGE = `Usage: npx hpo <command> [options]

Commands:
  start <config.yaml>      Start the study in the config, or attach to it if it runs, and show
                           its progress until it ends. Without a configured Temporal server
                           (TEMPORAL_ADDRESS, a TEMPORAL_PROFILE or the Temporal config file), it
                           starts an embedded dev server and a worker in this process.
      --skip-final-full-pipeline   do not run the full pipeline with the best parameters at the end
      --detach                     return once the study is started
      --worker / --no-worker       run a worker in this process (default: only with the embedded server)
      --verbose                    also print the worker's log lines
  worker                   Run a worker until SIGINT or SIGTERM.
      --role all|study|gpu         study: workflows and Optuna; gpu: training runs (default all)
      --task-queue NAME            task queue of the training runs (default ${DEFAULT_GPU_TASK_QUEUE})
      --slots N                    training runs at once (default: the number of --gpus, else 1)
      --gpus 0,1,...               GPU ids, one per run, set as CUDA_VISIBLE_DEVICES (default: CUDA_VISIBLE_DEVICES)
  status <study> [--json]  Show the study's trials: number, state, value, params, run id, attempts.
  stop <study> [--now]     Let running trials finish and start no new one; --now also stops them.
  budget <study> <n>       Set the total trial budget of a running study.
  server                   Run the embedded Temporal dev server until SIGINT.
`;

async function workerCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      role: { type: 'string', default: 'all' },
      'task-queue': { type: 'string', default: DEFAULT_GPU_TASK_QUEUE },
      slots: { type: 'string' },
      gpus: { type: 'string' },
    },
  });
  if (!['all', 'study', 'gpu'].includes(values.role!)) throw new UsageError(`--role must be all, study or gpu, but got ${values.role}`);
  const gpus = values.gpus !== undefined ? values.gpus.split(',').map((s) => s.trim()).filter(Boolean) : gpuListFromEnv();
  const slots = values.slots !== undefined ? Number(values.slots) : Math.max(1, gpus.length);
  if (!Number.isInteger(slots) || slots < 1) throw new UsageError(`--slots must be an integer of at least 1, but got ${values.slots}`);

  Runtime.install({ logger: new DefaultLogger('INFO') });
  if (values.role !== 'gpu') {
    // Fail before connecting when optuna is missing: that is the error the user can fix here.
    const bridge = new OptunaBridge(bridgePython(), Runtime.instance().logger);
    try {
      await bridge.start();
    } finally {
      await bridge.close();
    }
  }

  const target = await resolveTemporal({ projectDir: process.cwd(), startEmbedded: 'never' });
  const connection = await connectWorker(target);
  try {
    const workers = await createHpoWorkers({
      connection,
      namespace: target.namespace,
      study: values.role !== 'gpu',
      gpu: values.role !== 'study' ? { taskQueue: values['task-queue']!, slots, gpus } : null,
    });
    await workers.run();
  } finally {
    await connection.close();
  }
  return 0;
}

async function stopCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { now: { type: 'boolean', default: false } } });
  const study = positionals[0];
  if (!study) throw new UsageError('stop needs a study name: npx hpo stop <study> [--now]');
  await withClient(async (client) => {
    await client.workflow.getHandle(studyWorkflowId(study)).signal(stopStudySignal, values.now ? 'now' : 'graceful');
  });
  process.stdout.write(
    values.now
      ? `Stop requested for ${study}: running trials are stopped and marked FAIL with reason "stopped"; no new trial starts.\n`
      : `Stop requested for ${study}: running trials finish, no new trial starts.\n`,
  );
  return 0;
}

async function budgetCommand(args: string[]): Promise<number> {
  const [study, count] = args;
  const nTrials = Number(count);
  if (!study || !Number.isInteger(nTrials) || nTrials < 1) throw new UsageError('budget needs a study name and an integer of at least 1: npx hpo budget <study> <n>');
  const set = await withClient((client) => client.workflow.getHandle(studyWorkflowId(study)).executeUpdate(setTrialBudgetUpdate, { args: [nTrials] }));
  process.stdout.write(`Trial budget of ${study} is now ${set}.\n`);
  return 0;
}

async function serverCommand(): Promise<number> {
  const port = Number(process.env.HPO_DEV_SERVER_PORT ?? DEFAULT_DEV_SERVER_PORT);
  const uiPort = Number(process.env.HPO_DEV_SERVER_UI_PORT ?? DEFAULT_DEV_SERVER_UI_PORT);
  const stateDir = path.join(process.cwd(), 'artifacts', 'temporal');
  const server = await startDevServer({ dbFile: path.join(stateDir, 'temporal.db'), logFile: path.join(stateDir, 'server.log'), port, uiPort });
  if (!server.owned) throw new UsageError(`a server already listens on ${server.address}`);
  process.stdout.write(`Temporal dev server on ${server.address}, web UI ${server.uiUrl}; state in ${stateDir}. Ctrl-C stops it.\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.stop();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          'skip-final-full-pipeline': { type: 'boolean', default: false },
          detach: { type: 'boolean', default: false },
          worker: { type: 'boolean' },
          'no-worker': { type: 'boolean' },
          verbose: { type: 'boolean', default: false },
        },
      });
      if (positionals.length !== 1) throw new UsageError('start needs one config file: npx hpo start <config.yaml>');
      return await startCommand(positionals[0]!, {
        skipFinalFullPipeline: values['skip-final-full-pipeline']!,
        detach: values.detach!,
        worker: values['no-worker'] ? false : (values.worker ?? null),
        verbose: values.verbose!,
        pollIntervalMs: Number(process.env.HPO_PROGRESS_INTERVAL_MS ?? 2000),
      });
    }
    case 'worker':
      return await workerCommand(rest);
    case 'status':
      return await statusCommand(rest);
    case 'stop':
      return await stopCommand(rest);
    case 'budget':
      return await budgetCommand(rest);
    case 'server':
      return await serverCommand();
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${command}\n\n${USAGE}`);
  }
}
