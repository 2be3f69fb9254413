/**
 * GPU workers as child processes (`node bin/hpo.js worker --role gpu`), so that tests can end them
 * with real signals, and small helpers to check on processes and wait for conditions.
 *
 * Every worker started here is recorded. `killAllWorkerProcesses()` sends SIGKILL to those still
 * running, so an `after` hook leaves no worker behind even when a test fails halfway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const HPO_BIN = path.resolve(__dirname, '..', '..', 'bin', 'hpo.js');

export interface WorkerProcessOptions {
  /** host:port of the Temporal server, passed as TEMPORAL_ADDRESS. */
  address: string;
  taskQueue: string;
  slots: number;
  /** File that receives the worker's stdout and stderr (appended to). */
  logFile: string;
  /** Extra environment variables, merged over the parent's environment. */
  env?: NodeJS.ProcessEnv;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WorkerProcess {
  pid: number;
  logFile: string;
  /** Resolves when the process has exited. */
  exited: Promise<ProcessExit>;
  /** Sends a signal to the worker process only, not to its pipelines. Does nothing once it has exited. */
  signal(signal: NodeJS.Signals): void;
}

const started = new Set<ChildProcess>();

/**
 * Starts a GPU worker that sends heartbeats every 500 ms and polls the training CSV every 100 ms.
 * Resolves once the process is spawned, not once it polls its task queue, because tasks wait on
 * the server until it does.
 */
export async function startGpuWorkerProcess(options: WorkerProcessOptions): Promise<WorkerProcess> {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = fs.openSync(options.logFile, 'a');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_ADDRESS: options.address,
    TEMPORAL_NAMESPACE: 'default',
    HPO_HEARTBEAT_THROTTLE_MS: '500',
    HPO_POLL_INTERVAL_MS: '100',
    ...options.env,
  };
  // A profile or API key of the developer's own environment must not redirect the worker.
  delete env.TEMPORAL_PROFILE;
  delete env.TEMPORAL_API_KEY;

  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [HPO_BIN, 'worker', '--role', 'gpu', '--task-queue', options.taskQueue, '--slots', String(options.slots)], {
      env,
      stdio: ['ignore', log, log],
    });
  } finally {
    fs.closeSync(log);
  }

  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => {
      started.delete(child);
      resolve({ code, signal });
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  started.add(child);

  return {
    pid: child.pid!,
    logFile: options.logFile,
    exited,
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** Sends SIGKILL to every worker process started by this module that is still running, and waits for their exits. */
export async function killAllWorkerProcesses(): Promise<void> {
  const exits = [...started].map(
    (child) =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  await Promise.all(exits);
}

/** Sends a signal to a process group. Returns false when the group no longer exists. */
export function signalProcessGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/**
 * Sends SIGKILL to the process group led by `pid` if that process still runs a command whose
 * command line contains `marker` (a test's own folder), so a pid reused by an unrelated process
 * is never hit. Returns whether a signal was sent.
 */
export function killProcessGroupIfOwned(pid: number, marker: string): boolean {
  let cmdline: string;
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return false;
  }
  if (!cmdline.includes(marker)) return false;
  return signalProcessGroup(pid, 'SIGKILL');
}

/** Returns whether a process with this pid exists (zombies included), using signal 0. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Returns whether any process of the group exists (zombies included). */
export function processGroupExists(pgid: number): boolean {
  return processExists(-pgid);
}

/**
 * Polls `probe` every `intervalMs` until it returns a value other than undefined, and returns it.
 * Rejects after `timeoutMs` with `description` in the message. Errors thrown by the probe count as
 * "not yet", so a query sent before its workflow exists is simply tried again.
 */
export async function waitFor<T>(description: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Returns the last `lines` lines of a log file (for failure messages), or '' when it does not exist. */
export function logTail(file: string, lines = 40): string {
  if (!fs.existsSync(file)) return '';
  return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}
