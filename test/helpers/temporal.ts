/**
 * A real Temporal dev server per test file, on free ports with its own database, and the
 * workflow bundle built once per file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import { freePort, startDevServer, type DevServer } from '../../src/client/devServer';

export interface TestTemporal {
  server: DevServer;
  address: string;
  stateDir: string;
  nativeConnection: NativeConnection;
  connection: Connection;
  client: Client;
  bundle: WorkflowBundle;
  close(): Promise<void>;
}

let runtimeInstalled = false;

/** Keeps the SDK's log lines in a file (printed on failure by the caller if needed) instead of the test output. */
export function installTestRuntime(logFile: string): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const stream = fs.createWriteStream(logFile, { flags: 'a' });
  Runtime.install({
    logger: new DefaultLogger('INFO', (entry) => {
      stream.write(`${entry.level} ${entry.message} ${JSON.stringify(entry.meta ?? {})}\n`);
    }),
    shutdownSignals: [],
  });
}

let bundlePromise: Promise<WorkflowBundle> | null = null;

export function workflowBundle(): Promise<WorkflowBundle> {
  bundlePromise ??= bundleWorkflowCode({
    workflowsPath: require.resolve('../../src/workflows'),
    logger: new DefaultLogger('WARN'),
  });
  return bundlePromise;
}

export async function startTestTemporal(name: string): Promise<TestTemporal> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `hpo-${name}-`));
  installTestRuntime(path.join(stateDir, 'sdk.log'));
  const server = await startDevServer({
    dbFile: path.join(stateDir, 'temporal.db'),
    logFile: path.join(stateDir, 'server.log'),
    port: await freePort(),
    uiPort: await freePort(),
  });
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: 'default' });
  const bundle = await workflowBundle();
  return {
    server,
    address: server.address,
    stateDir,
    nativeConnection,
    connection,
    client,
    bundle,
    async close() {
      await connection.close();
      await nativeConnection.close();
      await server.stop();
    },
  };
}
