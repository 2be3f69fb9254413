/**
 * The Optuna bridge against real Optuna and a real SQLite storage: every call that an activity
 * may repeat gives the same result the second time.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { BridgeRequestError, MissingOptunaError, OptunaBridge, bridgePython } from '../../src/activities/optunaBridge';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
let bridge: OptunaBridge;
let dir: string;

function studyRef(name: string, pruner: Record<string, unknown> = { name: 'NopPruner', kwargs: {} }) {
  return {
    storage: { kind: 'url', url: `sqlite:///${path.join(dir, 'optuna.db')}` },
    study_name: name,
    direction: 'maximize',
    sampler: { name: 'RandomSampler', kwargs: { seed: 1 } },
    pruner,
  };
}

const space = [{ name: 'x', type: 'float', low: 0, high: 1 }];

async function open(name: string, extra: Record<string, unknown> = {}) {
  return (await bridge.call('open_study', {
    study: studyRef(name),
    search_space: space,
    fingerprint: 'fp-1',
    run_id_prefix: 'p1',
    recover_running: false,
    ...extra,
  })) as Record<string, any>;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpo-bridge-'));
  bridge = new OptunaBridge(bridgePython(), quiet);
  await bridge.start();
});

after(async () => {
  await bridge.close();
});

test('ask with same key returns same trial', async () => {
  await open('ask');
  const first = (await bridge.call('ask', { study: studyRef('ask'), key: 'chain/0', search_space: space, run_id_prefix: 'p1' })) as any;
  const again = (await bridge.call('ask', { study: studyRef('ask'), key: 'chain/0', search_space: space, run_id_prefix: 'p1' })) as any;
  const next = (await bridge.call('ask', { study: studyRef('ask'), key: 'chain/1', search_space: space, run_id_prefix: 'p1' })) as any;
  assert.equal(first.reused, false);
  assert.equal(again.reused, true);
  assert.equal(again.number, first.number);
  assert.deepEqual(again.params, first.params);
  assert.equal(next.number, first.number + 1);
});

test('report counts each step once', async () => {
  await open('report');
  const { number } = (await bridge.call('ask', { study: studyRef('report'), key: 'k/0', search_space: space })) as any;
  const first = (await bridge.call('report', { study: studyRef('report'), number, steps: [{ step: 1, value: 0.5 }, { step: 2, value: 0.6 }] })) as any;
  const repeated = (await bridge.call('report', { study: studyRef('report'), number, steps: [{ step: 2, value: 0.9 }, { step: 3, value: 'nan' }] })) as any;
  assert.deepEqual(first.reported, [1, 2]);
  // The second value for step 2 is ignored: the first value for a step counts.
  assert.deepEqual(repeated.skipped, [2]);
  assert.deepEqual(repeated.reported, [3]);
  const summary = (await bridge.call('summary', { study: studyRef('report') })) as any;
  assert.equal(summary.trials[0].last_step, 3);
});

test('tell twice keeps first state', async () => {
  await open('tell');
  const { number } = (await bridge.call('ask', { study: studyRef('tell'), key: 'k/0', search_space: space })) as any;
  const told = (await bridge.call('tell', { study: studyRef('tell'), number, state: 'complete', value: 0.7, user_attrs: { 'hpo:attempts': 1 } })) as any;
  const again = (await bridge.call('tell', { study: studyRef('tell'), number, state: 'fail', value: null, user_attrs: {} })) as any;
  assert.equal(told.state, 'COMPLETE');
  assert.equal(again.state, 'COMPLETE');
  assert.equal(again.already_finished, true);
  assert.equal(again.value, 0.7);
});

test('tell with NaN value stores FAIL', async () => {
  await open('nan');
  const { number } = (await bridge.call('ask', { study: studyRef('nan'), key: 'k/0', search_space: space })) as any;
  const told = (await bridge.call('tell', { study: studyRef('nan'), number, state: 'complete', value: 'nan', user_attrs: {} })) as any;
  // Optuna's own rule: a NaN objective value makes the trial FAIL.
  assert.equal(told.state, 'FAIL');
});

test('open with changed search space derives study', async () => {
  const first = await open('changed');
  const second = await open('changed', { fingerprint: 'fp-2', run_id_prefix: 'p2' });
  const same = await open('changed', { run_id_prefix: 'p3' });
  assert.equal(first.study_name, 'changed');
  assert.equal(second.study_name, 'changed__p2');
  assert.match(second.warning, /search space/);
  assert.equal(same.study_name, 'changed');
  // The run id prefix of the study's first start is kept.
  assert.equal(same.run_id_prefix, 'p1');
  // Started again with the changed space, the study continues the derived study it made before.
  const again = await open('changed', { fingerprint: 'fp-2', run_id_prefix: 'p4' });
  assert.equal(again.study_name, 'changed__p2');
  // Run ids of a derived study start with its name, so they never reuse the original's folders.
  assert.equal(again.run_id_prefix, 'changed__p2');
});

test('open recovers trials left running', async () => {
  await open('recover');
  const { number, params } = (await bridge.call('ask', { study: studyRef('recover'), key: 'old/0', search_space: space })) as any;
  const reopened = await open('recover', { recover_running: true });
  assert.deepEqual(reopened.recovered, [number]);
  // An interrupted trial does not count toward the budget.
  assert.equal(reopened.counted, 0);
  const rerun = (await bridge.call('ask', { study: studyRef('recover'), key: 'new/0', search_space: space })) as any;
  assert.deepEqual(rerun.params, params);
  assert.notEqual(rerun.number, number);
});

test('unknown sampler is rejected as invalid', async () => {
  const ref = { ...studyRef('bad'), sampler: { name: 'NoSuchSampler', kwargs: {} } };
  await assert.rejects(
    bridge.call('open_study', { study: ref, search_space: space, fingerprint: 'f', run_id_prefix: 'p', recover_running: false }),
    (error: Error) => error instanceof BridgeRequestError && /NoSuchSampler/.test(error.message),
  );
});

test('artifacts agree with storage', async () => {
  await open('artifacts');
  for (const [i, value] of [0.2, 0.9].entries()) {
    const { number } = (await bridge.call('ask', { study: studyRef('artifacts'), key: `k/${i}`, search_space: space, run_id_prefix: 'p1' })) as any;
    await bridge.call('tell', { study: studyRef('artifacts'), number, state: 'complete', value, user_attrs: {} });
  }
  const written = (await bridge.call('write_artifacts', { study: studyRef('artifacts'), artifact_dir: path.join(dir, 'a'), objective_metric: 'val_auprc' })) as any;
  const csv = fs.readFileSync(written.trials_csv, 'utf8').trim().split('\n');
  assert.equal(csv[0], 'trial_number,state,value,run_id,params_json');
  assert.match(csv[1]!, /^0,COMPLETE,0\.20000000,p1_t0000,"\{""x"": /);
  const yaml = fs.readFileSync(written.best_params_yaml, 'utf8');
  assert.match(yaml, /^study_name: artifacts$/m);
  assert.match(yaml, /^best_value: 0\.9$/m);
});

test('missing optuna names the python and pip', async () => {
  // A Python without optuna: the system interpreter with site-packages switched off.
  const fake = path.join(dir, 'python-without-optuna.sh');
  fs.writeFileSync(fake, `#!/bin/sh\nexec python3 -S "$@"\n`, { mode: 0o755 });
  const broken = new OptunaBridge(fake, quiet);
  await assert.rejects(broken.start(), (error: Error) => {
    assert.ok(error instanceof MissingOptunaError);
    // The message names the interpreter that lacks optuna (the one the wrapper runs) and the fix.
    assert.match(error.message, /optuna is not importable by \/\S*python3/);
    assert.match(error.message, /python3 -m pip install -r \/\S+\/requirements\.txt/);
    return true;
  });
  await broken.close();
});

test('restarted bridge does not repeat samples', async () => {
  await open('reseed');
  const asked: Array<Record<string, unknown>> = [];
  for (const key of ['a/0', 'a/1']) {
    const trial = (await bridge.call('ask', { study: studyRef('reseed'), key, search_space: space })) as any;
    await bridge.call('tell', { study: studyRef('reseed'), number: trial.number, state: 'complete', value: 0.5, user_attrs: {} });
    asked.push(trial.params);
  }

  // A new bridge, as after a worker restart, makes the seeded sampler again.
  const restarted = new OptunaBridge(bridgePython(), quiet);
  try {
    const next = (await restarted.call('ask', { study: studyRef('reseed'), key: 'b/0', search_space: space })) as any;
    // Without the seed offset, RandomSampler(seed=1) would sample trial 0's parameters again.
    assert.notDeepEqual(next.params, asked[0]);
    assert.notDeepEqual(next.params, asked[1]);
  } finally {
    await restarted.close();
  }
});
