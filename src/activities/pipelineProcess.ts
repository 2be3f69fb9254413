/**
 * Runs one pipeline command as the leader of its own process group, with its output in a log file.
 *
 * The child writes its stdout and stderr straight into the log through file descriptors it
 * inherits, not through pipes read by this process. With pipes, a crash or restart of the worker
 * would close them and the pipeline would die of SIGPIPE (or block on a full pipe) at its next
 * print, and output not yet copied would be lost. With inherited descriptors the pipeline keeps
 * running and logging on its own. The price is that this process receives no output events, so
 * `lastOutputAt()` comes from polling the log's size.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface PipelineLaunch {
  /** Executable and arguments; argv[0] is looked up on env.PATH unless it contains a slash. */
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** File that receives stdout and stderr; appended to, and its parent folders are created. */
  logPath: string;
}

export interface PipelineExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Whether stop() was called while the pipeline was still running. */
  stoppedByUs: boolean;
}

export interface PipelineProcessOptions {
  /** Interval of the log size checks behind lastOutputAt(), in ms. */
  outputPollMs?: number;
}

interface ExitEvent {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const DEFAULT_OUTPUT_POLL_MS = 500;
const GROUP_POLL_MS = 100;

/** Process groups of the pipelines this process started that have not exited yet. */
const liveGroups = new Set<number>();

/**
 * Sends SIGKILL to every pipeline process group still running, so a worker that must exit at
 * once (a second Ctrl-C) leaves no trainer holding a GPU.
 */
export function killAllPipelines(): number[] {
  const killed: number[] = [];
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // The group exited between the check and the signal.
    }
  }
  return killed;
}

export class PipelineProcess {
  readonly pid: number;
  readonly exited: Promise<PipelineExit>;
  private exit: PipelineExit | null = null;
  private stoppedByUs = false;
  private stopping: Promise<PipelineExit> | null = null;
  private lastOutput = Date.now();
  private readonly outputTimer: NodeJS.Timeout;

  private constructor(
    pid: number,
    exitEvent: Promise<ExitEvent>,
    private readonly logPath: string,
    private logSize: number,
    outputPollMs: number,
  ) {
    this.pid = pid;
    liveGroups.add(pid);
    this.exited = exitEvent.then(({ code, signal }) => {
      liveGroups.delete(pid);
      clearInterval(this.outputTimer);
      this.exit = { code, signal, stoppedByUs: this.stoppedByUs };
      return this.exit;
    });
    this.outputTimer = setInterval(() => this.checkOutput(), outputPollMs);
    this.outputTimer.unref();
  }

  /**
   * Starts the command without a shell, detached so that it leads a new process group.
   * Rejects when the working directory is missing or the executable cannot be started.
   */
  static async start(launch: PipelineLaunch, options: PipelineProcessOptions = {}): Promise<PipelineProcess> {
    const [executable, ...args] = launch.argv;
    if (!executable) {
      throw new Error('pipeline command is empty: expected argv[0] to name the executable');
    }
    await checkDirectory(launch.cwd);
    await fs.promises.mkdir(path.dirname(launch.logPath), { recursive: true });

    const log = await fs.promises.open(launch.logPath, 'a');
    try {
      const logSize = (await log.stat()).size;
      const child = spawn(executable, args, {
        cwd: launch.cwd,
        env: launch.env,
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
      });
      const exitEvent = new Promise<ExitEvent>((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        // Kept for the child's lifetime: an 'error' event without a listener would crash the worker.
        // After the spawn, the promise is settled and later errors are ignored.
        child.on('error', (error) => reject(startError(error as NodeJS.ErrnoException, launch)));
      });
      return new PipelineProcess(child.pid as number, exitEvent, launch.logPath, logSize, options.outputPollMs ?? DEFAULT_OUTPUT_POLL_MS);
    } finally {
      // The child has its own copies of the descriptor.
      await log.close();
    }
  }

  /** Returns the time in ms since the epoch when the log last grew (or the process started), accurate to outputPollMs. */
  lastOutputAt(): number {
    return this.lastOutput;
  }

  /**
   * Sends SIGTERM to the whole process group, then SIGKILL to the group if any member is alive
   * after graceMs. Resolves with the leader's exit. Later calls return the first call's promise.
   * Called after the leader exited on its own, it only cleans up group members still alive and
   * leaves stoppedByUs false.
   */
  stop(graceMs: number): Promise<PipelineExit> {
    this.stopping ??= this.terminate(graceMs);
    return this.stopping;
  }

  private async terminate(graceMs: number): Promise<PipelineExit> {
    if (this.exit === null) {
      this.stoppedByUs = true;
    } else if (!(await this.groupAlive())) {
      return this.exit;
    }

    this.signalGroup('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (await this.groupAlive())) {
      await sleep(Math.min(GROUP_POLL_MS, deadline - Date.now()));
    }
    if (await this.groupAlive()) this.signalGroup('SIGKILL');

    // NOTE: a process stuck in uninterruptible sleep (a hung GPU driver or network file system)
    // survives SIGKILL until the kernel call returns, and this await waits as long.
    return this.exited;
  }

  private signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }

  /** Returns whether any process of the group is still running. Zombies waiting to be reaped do not count. */
  private async groupAlive(): Promise<boolean> {
    try {
      process.kill(-this.pid, 0);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (this.exit === null) return true;
    // Orphaned members are reaped by init, which may take seconds, so look past zombies.
    const members = await runningGroupMembers(this.pid);
    return members === null || members.length > 0;
  }

  private checkOutput(): void {
    fs.stat(this.logPath, (error, stat) => {
      if (error || stat.size === this.logSize) return;
      this.logSize = stat.size;
      this.lastOutput = Date.now();
    });
  }
}

async function checkDirectory(cwd: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(cwd);
  } catch {
    throw new Error(`pipeline working directory not found: ${cwd}; set the pipeline workdir to an existing folder`);
  }
  if (!stat.isDirectory()) {
    throw new Error(`pipeline working directory is not a directory: ${cwd}`);
  }
}

function startError(error: NodeJS.ErrnoException, launch: PipelineLaunch): Error {
  const executable = launch.argv[0];
  if (error.code === 'ENOENT' && executable.includes('/')) {
    const resolved = path.resolve(launch.cwd, executable);
    return new Error(`cannot start the pipeline: executable not found: ${resolved} ("${executable}" relative to cwd ${launch.cwd})`);
  }
  if (error.code === 'ENOENT') {
    return new Error(
      `cannot start the pipeline: executable "${executable}" not found on PATH=${launch.env.PATH ?? '(unset)'} (cwd ${launch.cwd}). ` +
        'Give its absolute path, or add its folder to PATH in the worker environment.',
    );
  }
  if (error.code === 'EACCES') {
    return new Error(`cannot start the pipeline: permission denied for "${executable}" (cwd ${launch.cwd}); is it an executable file?`);
  }
  return new Error(`cannot start the pipeline "${executable}" (cwd ${launch.cwd}): ${error.message}`);
}

/** Returns the pids of non-zombie processes in the group, or null where /proc cannot be read. */
async function runningGroupMembers(pgid: number): Promise<number[] | null> {
  let entries: string[];
  try {
    entries = await fs.promises.readdir('/proc');
  } catch {
    return null;
  }

  const members: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await fs.promises.readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // the process ended while the folder was being read
    }
    // The command name in brackets may contain spaces, so fields are counted after its closing bracket.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    const group = Number(fields[2]);
    if (group === pgid && state !== 'Z' && state !== 'X') members.push(Number(entry));
  }
  return members;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * Returns the last maxLines lines of a log file, reading at most its last maxBytes bytes.
 * Within a line, text before a carriage return (a progress bar redrawing itself) is dropped, as a
 * terminal would show it. Returns '' when the file does not exist.
 */
export async function readLogTail(logPath: string, maxLines: number, maxBytes = 64 * 1024): Promise<string> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(logPath, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }

  let text: string;
  let startedMidFile: boolean;
  try {
    const size = (await handle.stat()).size;
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    text = buffer.subarray(0, bytesRead).toString('utf8');
    startedMidFile = start > 0;
  } finally {
    await handle.close();
  }

  let lines = text.split('\n');
  // A read that starts inside a line (or a UTF-8 character) gets a broken first line.
  if (startedMidFile && lines.length > 1) lines = lines.slice(1);
  if (lines[lines.length - 1] === '') lines.pop();

  const visibleLines = lines.map((line) => {
    const withoutCr = line.endsWith('\r') ? line.slice(0, -1) : line;
    return withoutCr.slice(withoutCr.lastIndexOf('\r') + 1);
  });
  return maxLines > 0 ? visibleLines.slice(-maxLines).join('\n') : '';
}
