/**
 * Where the Temporal server is. The standard environment configuration decides
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_PROFILE and the TOML config
 * file, read by @temporalio/envconfig); when it names no address, the embedded dev server is used.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadClientConfigProfile, toClientOptions } from '@temporalio/envconfig';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { DEFAULT_DEV_SERVER_PORT, DEFAULT_DEV_SERVER_UI_PORT, startDevServer, type DevServer } from './devServer';

export interface TemporalTarget {
  connectionOptions: NativeConnectionOptions;
  namespace: string;
  /** Web UI base address, when known. */
  uiUrl: string | null;
  embedded: DevServer | null;
}

/** Wraps a failed connection in a message that names the address and what to do. */
export function connectionError(target: TemporalTarget, error: unknown): Error {
  const detail = error instanceof Error ? error.message : String(error);
  const hint = target.embedded
    ? 'The embedded server may have stopped: run the command again.'
    : 'Check TEMPORAL_ADDRESS (or your Temporal profile), or run the embedded server with npx hpo server.';
  return new Error(`cannot connect to the Temporal server at ${target.connectionOptions.address}: ${detail}. ${hint}`);
}

export async function connectClient(target: TemporalTarget): Promise<Connection> {
  try {
    return await Connection.connect(target.connectionOptions);
  } catch (error) {
    throw connectionError(target, error);
  }
}

export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect(target.connectionOptions);
  } catch (error) {
    throw connectionError(target, error);
  }
}

/** Returns the configured server, or null when the environment names none. */
export function configuredServer(): { connectionOptions: NativeConnectionOptions; namespace: string } | null {
  const profile = loadClientConfigProfile();
  if (!profile.address) return null;
  const connect = toClientOptions(profile);
  return { connectionOptions: connect.connectionOptions, namespace: connect.namespace ?? 'default' };
}

export interface ResolveOptions {
  projectDir: string;
  /**
   * Start the embedded server when none is configured and none listens on its port: always,
   * only when its state file exists in the project (a command that reads a study), or never.
   */
  startEmbedded: 'always' | 'if-state-exists' | 'never';
}

export async function resolveTemporal(options: ResolveOptions): Promise<TemporalTarget> {
  const configured = configuredServer();
  if (configured) {
    return { ...configured, uiUrl: process.env.HPO_TEMPORAL_UI_URL ?? null, embedded: null };
  }

  const port = Number(process.env.HPO_DEV_SERVER_PORT ?? DEFAULT_DEV_SERVER_PORT);
  const uiPort = Number(process.env.HPO_DEV_SERVER_UI_PORT ?? DEFAULT_DEV_SERVER_UI_PORT);
  const stateDir = path.join(options.projectDir, 'artifacts', 'temporal');
  const dbFile = path.join(stateDir, 'temporal.db');
  const start = options.startEmbedded === 'always' || (options.startEmbedded === 'if-state-exists' && fs.existsSync(dbFile));
  if (!start) {
    return {
      connectionOptions: { address: `127.0.0.1:${port}` },
      namespace: 'default',
      uiUrl: `http://127.0.0.1:${uiPort}`,
      embedded: null,
    };
  }

  const server = await startDevServer({
    dbFile,
    logFile: path.join(stateDir, 'server.log'),
    port,
    uiPort,
  });
  return { connectionOptions: { address: server.address }, namespace: 'default', uiUrl: server.uiUrl, embedded: server };
}

/**
 * Runs `fn` with a client of the configured server or, in a project that used the embedded
 * server, of that server (started for the call when no `hpo start` runs it).
 */
export async function withClient<T>(fn: (client: Client, target: TemporalTarget) => Promise<T>): Promise<T> {
  const target = await resolveTemporal({ projectDir: process.cwd(), startEmbedded: 'if-state-exists' });
  try {
    const connection = await connectClient(target);
    try {
      return await fn(new Client({ connection, namespace: target.namespace }), target);
    } finally {
      await connection.close();
    }
  } finally {
    await target.embedded?.stop();
  }
}
