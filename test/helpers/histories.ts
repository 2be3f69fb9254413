/**
 * Recorded workflow histories for the replay test. With HPO_RECORD_HISTORIES=1, the end-to-end
 * tests save the histories of the workflows they ran into test/histories/; committing them means
 * any later change to workflow code that would break a running study fails test/replay.test.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';

export const HISTORIES_DIR = path.resolve(__dirname, '..', 'histories');

export async function recordHistory(client: Client, workflowId: string, name: string): Promise<void> {
  if (process.env.HPO_RECORD_HISTORIES !== '1') return;
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  fs.mkdirSync(HISTORIES_DIR, { recursive: true });
  fs.writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), historyToJSON(history));
}
