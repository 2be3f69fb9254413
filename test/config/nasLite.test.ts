import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { parse, stringify } from 'yaml';

import type { SearchParam } from '../../src/common/types';
import { extendSearchSpaceForNasLite, parseStudySpec } from '../../src/config';
import { cappedTrialCount, planNasLite } from '../../src/config/nasLite';

const RELIC = path.join(__dirname, '..', 'fixtures', 'relic');
const V5_TEXT = fs.readFileSync(path.join(RELIC, 'v5_hpo.yaml'), 'utf8');
const V3_TEXT = fs.readFileSync(path.join(RELIC, 'v3_local_cpu.yaml'), 'utf8');
const ENABLED = { enabled: true, method: 'arch_params_hpo', max_candidates: null };

// Parsed YAML that the test tables edit freely.
type Doc = any;

function v5Base(): Doc {
  return parse(V5_TEXT);
}

const LR_PARAM: SearchParam = {
  name: 'optimizer_lr', path: 'training_config.optimizer.lr', type: 'float', low: 1e-5, high: 3e-4, log: true, source: 'user',
};

describe('extendSearchSpaceForNasLite', () => {
  test('adds three when absent', () => {
    const space = extendSearchSpaceForNasLite(v5Base(), [LR_PARAM], ENABLED);
    assert.deepEqual(space, [
      LR_PARAM,
      { name: 'd_model', path: 'model_config.d_model', type: 'categorical', choices: [128, 192, 256], source: 'nas_lite' },
      { name: 'encoder_layers', path: 'model_config.encoder_layers', type: 'int', low: 1, high: 4, step: 1, log: false, source: 'nas_lite' },
      { name: 'cross_attn_layers', path: 'model_config.cross_attn_layers', type: 'int', low: 1, high: 4, step: 1, log: false, source: 'nas_lite' },
    ]);
  });

  test('v3 model supported', () => {
    const space = extendSearchSpaceForNasLite(parse(V3_TEXT), [], ENABLED);
    assert.equal(space.length, 3);
  });

  test('skips path absent in config', () => {
    const base = v5Base();
    delete base.model_config.cross_attn_layers;
    const space = extendSearchSpaceForNasLite(base, [LR_PARAM], ENABLED);
    assert.deepEqual(space.map((param) => param.path), [
      'training_config.optimizer.lr', 'model_config.d_model', 'model_config.encoder_layers',
    ]);
  });

  test('absent path noted', () => {
    const base = v5Base();
    delete base.model_config.cross_attn_layers;
    const plan = planNasLite(base, [], ENABLED);
    assert.ok(plan.skipped.some((line) => line.includes('model_config.cross_attn_layers')));
  });

  const otherModels: Array<[string, unknown]> = [['v2', 'v2'], ['v6', 'v6'], ['upper case', 'V5'], ['number', 5], ['missing', undefined]];
  for (const [name, model] of otherModels) {
    test(`skips model ${name}`, () => {
      const base = v5Base();
      if (model === undefined) delete base.model_config.model;
      else base.model_config.model = model;
      const plan = planNasLite(base, [LR_PARAM], ENABLED);
      assert.deepEqual(plan.added, []);
      assert.equal(plan.skipped.length, 1);
    });
  }

  test('keeps user param for path', () => {
    const userDModel: SearchParam = { name: 'width', path: 'model_config.d_model', type: 'categorical', choices: [64, 96], source: 'user' };
    const space = extendSearchSpaceForNasLite(v5Base(), [userDModel], ENABLED);
    // The user's own parameter for model_config.d_model wins; NAS-lite adds only the other two.
    assert.deepEqual(space[0], userDModel);
    assert.deepEqual(space.map((param) => param.path), [
      'model_config.d_model', 'model_config.encoder_layers', 'model_config.cross_attn_layers',
    ]);
  });

  test('name taken by other path', () => {
    const userParam: SearchParam = { name: 'd_model', path: 'model_config.pair_dim', type: 'int', low: 32, high: 128, step: 1, log: false, source: 'user' };
    const space = extendSearchSpaceForNasLite(v5Base(), [userParam], ENABLED);
    const added = space.find((param) => param.path === 'model_config.d_model');
    assert.equal(added?.name, 'nas_d_model');
  });

  test('prefixed name also taken', () => {
    const taken: SearchParam[] = ['d_model', 'nas_d_model'].map((name, index) => ({
      name, path: `model_config.${index === 0 ? 'pair_dim' : 'cnn_dim'}`, type: 'int', low: 1, high: 2, step: 1, log: false, source: 'user',
    }));
    const space = extendSearchSpaceForNasLite(v5Base(), taken, ENABLED);
    assert.equal(space.find((param) => param.path === 'model_config.d_model')?.name, 'nas_d_model_2');
  });

  test('disabled adds nothing', () => {
    const space = extendSearchSpaceForNasLite(v5Base(), [LR_PARAM], { ...ENABLED, enabled: false });
    assert.deepEqual(space, [LR_PARAM]);
  });

  test('user space not mutated', () => {
    const userSpace = [LR_PARAM];
    extendSearchSpaceForNasLite(v5Base(), userSpace, ENABLED);
    assert.equal(userSpace.length, 1);
  });

  test('unknown method throws', () => {
    assert.throws(() => extendSearchSpaceForNasLite(v5Base(), [], { ...ENABLED, method: 'darts' }), /Unknown NAS-lite method "darts"/);
  });
});

describe('cappedTrialCount', () => {
  const cases: Array<[number, number | null, boolean, number]> = [
    [30, 20, true, 20],
    [10, 20, true, 10],
    [20, 20, true, 20],
    [30, null, true, 30],
    [30, 20, false, 30],
  ];
  for (const [nTrials, maxCandidates, enabled, expected] of cases) {
    test(`${nTrials} trials, cap ${maxCandidates}, enabled ${enabled}`, () => {
      assert.equal(cappedTrialCount(nTrials, { enabled, method: 'arch_params_hpo', max_candidates: maxCandidates }), expected);
    });
  }
});

describe('NAS-lite through the loader', () => {
  const load = (change: (doc: Doc) => void) => {
    const doc = v5Base();
    change(doc);
    return parseStudySpec(stringify(doc), { configPath: '/p/study.yaml', projectDir: '/p', now: new Date(0) });
  };

  test('adds to user space', () => {
    const { spec } = load((doc) => { doc.optimization.search_space = doc.optimization.search_space.slice(0, 3); });
    assert.deepEqual(spec.searchSpace.map((param) => `${param.name}:${param.source}`), [
      'optimizer_lr:user', 'weight_decay:user', 'batch_size:user', 'd_model:nas_lite', 'encoder_layers:nas_lite', 'cross_attn_layers:nas_lite',
    ]);
  });

  test('unsupported model noted', () => {
    const { spec, notices } = load((doc) => {
      doc.model_config.model = 'v2';
      doc.optimization.search_space = doc.optimization.search_space.slice(0, 3);
    });
    assert.equal(spec.searchSpace.length, 3);
    assert.ok(notices.some((notice) => notice.includes('"v2"')), notices.join('\n'));
  });

  test('cap ignored when disabled', () => {
    const { spec, notices } = load((doc) => { doc.nas_lite.enabled = false; });
    assert.equal(spec.nTrials, 30);
    assert.ok(notices.some((notice) => notice.includes('max_candidates has no effect')));
  });

  test('section missing means disabled', () => {
    const { spec } = load((doc) => {
      delete doc.nas_lite;
      doc.optimization.search_space = doc.optimization.search_space.slice(0, 3);
    });
    assert.equal(spec.searchSpace.length, 3);
    assert.equal(spec.nTrials, 30);
  });
});
