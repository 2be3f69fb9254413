/**
 * Replays recorded workflow histories (test/histories/*.json) against the current workflow code.
 * A change that would make a running study's history non-deterministic fails here. Record new
 * histories with `HPO_RECORD_HISTORIES=1 ./scripts/test.sh test/e2e/study.test.ts` after a
 * deliberate, versioned change (see docs/architecture.md, "Changing workflow code").
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { HISTORIES_DIR } from './helpers/histories';
import { installTestRuntime, workflowBundle } from './helpers/temporal';

const files = fs.existsSync(HISTORIES_DIR) ? fs.readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json')).sort() : [];

test('recorded histories exist', () => {
  // Without recorded histories the replay check would pass vacuously.
  assert.ok(files.length >= 3, `expected recorded histories in ${HISTORIES_DIR}, found ${files.length}`);
});

for (const file of files) {
  test(`replay ${file}`, async () => {
    installTestRuntime(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hpo-replay-')), 'sdk.log'));
    const history = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, file);
  });
}
