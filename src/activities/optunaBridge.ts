import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

/** Minimal logger shape, so the Temporal Runtime logger and the console both fit. */
export interface BridgeLogger {
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

export const BRIDGE_SCRIPT = path.resolve(__dirname, '..', 'python', 'optuna_bridge.py');

/** Raised when the bridge's Python cannot import optuna. The message contains the fix. */
export class MissingOptunaError extends Error {
  override name = 'MissingOptunaError';
}

/** Raised for a request the bridge rejected as invalid, so a retry gets the same response. */
export class BridgeRequestError extends Error {
  override name = 'BridgeRequestError';
  constructor(
    message: string,
    readonly errorType: string,
  ) {
    super(message);
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  method: string;
}

/**
 * Picks the Python that runs the bridge: HPO_PYTHON, else the project's `.venv`, else `python3`.
 * The bridge needs only optuna and pyyaml; the pipeline may use another interpreter.
 */
export function bridgePython(projectRoot = path.resolve(__dirname, '..', '..')): string {
  if (process.env.HPO_PYTHON) return process.env.HPO_PYTHON;
  const venvPython = path.join(projectRoot, '.venv', 'bin', 'python');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node:fs').existsSync(venvPython) ? venvPython : 'python3';
}

export function missingOptunaMessage(python: string, detail: string): string {
  return (
    `optuna is not importable by ${python} (${detail}). ` +
    `Install it with: ${python} -m pip install -r ${path.resolve(__dirname, '..', '..', 'requirements.txt')} ` +
    `(or run ./scripts/hpo_optuna.sh once, which creates .venv), or point HPO_PYTHON at an interpreter that has optuna.`
  );
}

/**
 * Client of the long-lived Python bridge (src/python/optuna_bridge.py), speaking JSON lines.
 * One Python process handles the requests in order. If it dies, pending calls fail (their
 * activities retry) and the next call starts a new process.
 */
export class OptunaBridge {
  private child: ChildProcessWithoutNullStreams | undefined;
  private ready: Promise<void> | undefined;
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;

  constructor(
    private readonly python: string,
    private readonly logger: BridgeLogger,
  ) {}

  /** Starts the bridge now, so a missing optuna is reported at worker start, not at the first trial. */
  async start(): Promise<{ optunaVersion: string; python: string }> {
    const info = (await this.call('ping', {})) as { optuna_version: string; python: string };
    return { optunaVersion: info.optuna_version, python: info.python };
  }

  async call(method: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.closing) throw new Error('the Optuna bridge is shutting down');
    await this.ensureStarted();
    const child = this.child;
    if (!child) throw new Error('the Optuna bridge is not running');

    const id = this.nextId++;
    const result = new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
    });
    child.stdin.write(JSON.stringify({ id, method, params }) + '\n');
    return result;
  }

  async close(): Promise<void> {
    this.closing = true;
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private ensureStarted(): Promise<void> {
    if (!this.ready) {
      this.ready = this.spawnBridge().catch((error: unknown) => {
        this.ready = undefined;
        throw error;
      });
    }
    return this.ready;
  }

  private spawnBridge(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let started = false;
      const child = spawn(this.python, ['-u', BRIDGE_SCRIPT], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
      });
      this.child = child;

      child.on('error', (error: NodeJS.ErrnoException) => {
        const message =
          error.code === 'ENOENT'
            ? `cannot start the Optuna bridge: Python interpreter ${this.python} not found. ` +
              `Run ./scripts/hpo_optuna.sh once to create .venv, or set HPO_PYTHON.`
            : `cannot start the Optuna bridge with ${this.python}: ${error.message}`;
        if (!started) reject(new Error(message));
        this.logger.error('Optuna bridge failed to start', { python: this.python, error: error.message });
      });

      readline.createInterface({ input: child.stderr }).on('line', (line) => {
        this.logger.info(line, { component: 'optuna-bridge', pid: child.pid });
      });

      readline.createInterface({ input: child.stdout }).on('line', (line) => {
        let message: { id?: number; result?: unknown; error?: { type: string; message: string }; ready?: unknown; fatal?: { type: string; message: string; python: string } };
        try {
          message = JSON.parse(line);
        } catch {
          this.logger.warn('Optuna bridge wrote a line that is not JSON', { line });
          return;
        }
        if (message.fatal) {
          const error =
            message.fatal.type === 'MissingOptuna'
              ? new MissingOptunaError(missingOptunaMessage(message.fatal.python, message.fatal.message))
              : new Error(message.fatal.message);
          if (!started) reject(error);
          return;
        }
        if (message.ready) {
          started = true;
          this.logger.info('Optuna bridge started', { pid: child.pid, ...(message.ready as object) });
          resolve();
          return;
        }
        const pending = message.id === undefined ? undefined : this.pending.get(message.id);
        if (!pending || message.id === undefined) {
          this.logger.warn('Optuna bridge sent a response for an unknown request id', { id: message.id });
          return;
        }
        this.pending.delete(message.id);
        if (!message.error) pending.resolve(message.result);
        else if (message.error.type === 'BridgeError') pending.reject(new BridgeRequestError(`${pending.method}: ${message.error.message}`, message.error.type));
        // Anything else (a locked database, a lost connection) may pass on a retry.
        else pending.reject(new Error(`${pending.method} failed in the Optuna bridge: ${message.error.type}: ${message.error.message}`));
      });

      child.on('exit', (code, signal) => {
        if (this.child === child) {
          this.child = undefined;
          this.ready = undefined;
        }
        const error = new Error(`the Optuna bridge exited (code ${code}, signal ${signal}) before it responded`);
        for (const [id, pending] of this.pending) {
          this.pending.delete(id);
          pending.reject(error);
        }
        if (!started) reject(new Error(`the Optuna bridge exited at start (code ${code}, signal ${signal}); see the log above`));
        if (!this.closing) this.logger.warn('Optuna bridge exited', { pid: child.pid, code, signal });
      });
    });
  }
}
