/**
 * The same study started again, with its search space unchanged and changed: the unchanged
 * study continues; a changed one continues under a derived name with a warning once the old one
 * has finished, and is refused while the old one runs.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import YAML from 'yaml';
import { startOrAttach } from '../../src/client/start';
import type { StudySpec } from '../../src/common/types';
import { loadStudySpec } from '../../src/config';
import { createHpoWorkers, type HpoWorkers } from '../../src/worker/workers';
import { makeFakeStudy, readOptunaStudy, type FakeStudy } from '../helpers/fakeStudy';
import { assertStudyInvariants } from '../helpers/invariants';
import { startTestTemporal, type TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;

before(async () => {
  temporal = await startTestTemporal('space');
});

after(async () => {
  await temporal?.close();
});

async function withWorkers<T>(study: FakeStudy, fn: () => Promise<T>): Promise<T> {
  const workers: HpoWorkers = await createHpoWorkers({
    connection: temporal.nativeConnection,
    namespace: 'default',
    study: true,
    gpu: { taskQueue: study.spec.execution.taskQueue, slots: 2, gpus: [] },
    workflowBundle: temporal.bundle,
    heartbeatThrottleMs: 500,
    pollIntervalMs: 100,
  });
  const running = workers.run();
  try {
    return await fn();
  } finally {
    workers.shutdown();
    await running;
  }
}

/** Loads the study's config with another choice list for `quality`, as `hpo start` would. */
function changedSpec(study: FakeStudy, qualities: number[]): StudySpec {
  const document = YAML.parse(fs.readFileSync(study.configPath, 'utf8'));
  document.optimization.search_space[0].choices = qualities;
  const changedPath = path.join(study.projectDir, 'study-changed.yaml');
  fs.writeFileSync(changedPath, YAML.stringify(document));
  return loadStudySpec(changedPath, { projectDir: study.projectDir }).spec;
}

test('unchanged study continues without new trials', async () => {
  const study = makeFakeStudy({ studyName: 'same', nTrials: 2, epochs: 2, finalFullPipeline: true });
  await withWorkers(study, async () => {
    const first = await (await startOrAttach(temporal.client, study.spec)).handle.result();
    const runsBefore = study.runs().length;

    const { handle, attached } = await startOrAttach(temporal.client, study.spec);
    const second = await handle.result();

    assert.equal(attached, false);
    assert.equal(second.studyName, 'same');
    assert.equal(second.warning, null);
    assert.equal(second.counted, 2);
    // The budget was met, and the final run had run for the same best trial: nothing ran again.
    assert.equal(study.runs().length, runsBefore);
    assert.deepEqual(second.finalRun, first.finalRun);
    assertStudyInvariants(study, second);
  });
});

test('changed study continues under derived name', async () => {
  const study = makeFakeStudy({ studyName: 'changed', nTrials: 2, epochs: 2 });
  await withWorkers(study, async () => {
    const first = await (await startOrAttach(temporal.client, study.spec)).handle.result();
    assertStudyInvariants(study, first);

    const spec = changedSpec(study, [0.2, 0.4]);
    const second = await (await startOrAttach(temporal.client, spec)).handle.result();

    // The fake study's config sets run_id_prefix: test, which names the derived study.
    assert.equal(second.studyName, 'changed__test');
    assert.match(second.warning ?? '', /search space of study 'changed' changed/);
    assert.equal(second.counted, 2);
    // The derived study has its own trials and artifact folder; the old study is untouched.
    const derived = readOptunaStudy(spec, second.studyName);
    assert.equal(derived.length, 2);
    for (const trial of derived) assert.ok([0.2, 0.4].includes(trial.params.quality as number));
    assert.equal(readOptunaStudy(study.spec).length, 2);
    assert.equal(path.dirname(second.trialsCsv), path.join(study.projectDir, 'artifacts', 'hpo', 'changed__test'));
    assert.deepEqual(derived.map((t) => t.userAttrs['hpo:run_id']), ['changed__test_t0000', 'changed__test_t0001']);
  });
});

test('changed space is refused while study runs', async () => {
  const study = makeFakeStudy({ studyName: 'busy', nTrials: 1, epochs: 6, epochSeconds: 0.3 });
  await withWorkers(study, async () => {
    const { handle } = await startOrAttach(temporal.client, study.spec);
    await assert.rejects(startOrAttach(temporal.client, changedSpec(study, [0.1])), (error: Error) => {
      assert.equal(error.name, 'UsageError');
      assert.match(error.message, /running with another search space/);
      assert.match(error.message, /npx hpo stop busy/);
      return true;
    });
    const result = await handle.result();
    assertStudyInvariants(study, result);
    // No trial of the changed space was asked.
    assert.deepEqual(readOptunaStudy(study.spec).map((t) => t.params.quality), [result.trials[0]!.params.quality]);
  });
});
