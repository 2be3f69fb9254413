import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import type { SearchParam, StudySpec } from '../../src/common/types';
import {
  buildFinalConfig,
  buildTrialConfig,
  getPath,
  objectiveColumnFor,
  parseStudySpec,
  searchSpaceFingerprint,
  trialRunId,
} from '../../src/config';
import { defaultRunIdPrefix } from '../../src/config/trialConfig';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const V5_TEXT = fs.readFileSync(path.join(FIXTURES, 'relic', 'v5_hpo.yaml'), 'utf8');
const MINIMAL_TEXT = fs.readFileSync(path.join(FIXTURES, 'configs', 'minimal.yaml'), 'utf8');

function specFrom(text: string, runIdPrefix = 'study1'): StudySpec {
  const prefixed = text.replace(/^optimization:\n/m, `optimization:\n  run_id_prefix: "${runIdPrefix}"\n`);
  return parseStudySpec(prefixed, { configPath: '/p/study.yaml', projectDir: '/p' }).spec;
}

const V5_PARAMS = {
  optimizer_lr: 0.0002,
  weight_decay: 0.01,
  batch_size: 32,
  d_model: 256,
  encoder_layers: 3,
  cross_attn_layers: 1,
};

describe('trialRunId', () => {
  const cases: Array<[number, string]> = [
    [0, 'v5_t0000'],
    [3, 'v5_t0003'],
    [42, 'v5_t0042'],
    [9999, 'v5_t9999'],
    [12345, 'v5_t12345'],
  ];
  for (const [trialNumber, expected] of cases) {
    test(`trial ${trialNumber}`, () => {
      assert.equal(trialRunId('v5', trialNumber), expected);
    });
  }

  for (const invalid of [-1, 1.5, Number.NaN]) {
    test(`trial ${invalid} rejected`, () => {
      assert.throws(() => trialRunId('v5', invalid), RangeError);
    });
  }

  test('empty prefix rejected', () => {
    assert.throws(() => trialRunId('', 1), /non-empty prefix/);
  });
});

describe('defaultRunIdPrefix', () => {
  test('UTC timestamp', () => {
    assert.equal(defaultRunIdPrefix(new Date(Date.UTC(2024, 11, 31, 23, 59, 58))), '20241231_235958');
  });

  test('zero padded', () => {
    assert.equal(defaultRunIdPrefix(new Date(Date.UTC(2025, 0, 2, 3, 4, 5))), '20250102_030405');
  });
});

describe('buildTrialConfig', () => {
  const spec = specFrom(V5_TEXT);

  test('params at paths', () => {
    const { config } = buildTrialConfig(spec, V5_PARAMS, 7);
    assert.equal(getPath(config, 'training_config.optimizer.lr'), 0.0002);
    assert.equal(getPath(config, 'training_config.optimizer.weight_decay'), 0.01);
    assert.equal(getPath(config, 'training_config.batch_size'), 32);
    assert.equal(getPath(config, 'model_config.d_model'), 256);
    assert.equal(getPath(config, 'model_config.encoder_layers'), 3);
    assert.equal(getPath(config, 'model_config.cross_attn_layers'), 1);
  });

  test('run config of trial', () => {
    const { config, runId } = buildTrialConfig(spec, V5_PARAMS, 7);
    assert.equal(runId, 'study1_t0007');
    assert.equal(getPath(config, 'run_config.mode'), 'train_only');
    assert.equal(getPath(config, 'run_config.train_run_id'), 'study1_t0007');
    // Keys the trial does not own stay as the user wrote them.
    assert.equal(getPath(config, 'run_config.eval_run_id'), null);
    assert.equal(getPath(config, 'run_config.seed'), 47);
  });

  test('ddp disabled by default', () => {
    // v5_hpo.yaml has ddp_enabled: true, but trials run without DDP unless ddp_per_trial is set.
    const { config } = buildTrialConfig(spec, V5_PARAMS, 0);
    assert.equal(getPath(config, 'device_config.ddp_enabled'), false);
  });

  test('ddp kept per trial', () => {
    const ddpSpec = { ...spec, execution: { ...spec.execution, ddpPerTrial: true } };
    const { config } = buildTrialConfig(ddpSpec, V5_PARAMS, 0);
    assert.equal(getPath(config, 'device_config.ddp_enabled'), true);
  });

  test('trial mode from spec', () => {
    const fullSpec = { ...spec, execution: { ...spec.execution, trialMode: 'full_pipeline' } };
    const { config } = buildTrialConfig(fullSpec, V5_PARAMS, 0);
    assert.equal(getPath(config, 'run_config.mode'), 'full_pipeline');
  });

  test('other sections kept', () => {
    const { config } = buildTrialConfig(spec, V5_PARAMS, 0);
    assert.deepEqual(config.optimization, spec.baseConfig.optimization);
    assert.deepEqual(config.nas_lite, spec.baseConfig.nas_lite);
    assert.deepEqual(config.evaluate, spec.baseConfig.evaluate);
    assert.equal(getPath(config, 'model_config.n_heads'), 8);
  });

  test('base config not mutated', () => {
    const before = JSON.stringify(spec.baseConfig);
    const { config } = buildTrialConfig(spec, V5_PARAMS, 0);
    (config.model_config as Record<string, unknown>).n_heads = 99;
    assert.equal(JSON.stringify(spec.baseConfig), before);
  });

  test('sections created', () => {
    const minimal = specFrom(MINIMAL_TEXT);
    const { config } = buildTrialConfig(minimal, { lr: 0.0005 }, 2);
    assert.deepEqual(config.run_config, { mode: 'train_only', train_run_id: 'study1_t0002' });
    assert.deepEqual(config.device_config, { ddp_enabled: false });
  });

  test('missing param rejected', () => {
    const { d_model: _dModel, ...partial } = V5_PARAMS;
    assert.throws(() => buildTrialConfig(spec, partial, 0), /Parameter "d_model" has no value/);
  });

  test('unknown param rejected', () => {
    assert.throws(() => buildTrialConfig(spec, { ...V5_PARAMS, dropout: 0.1 }, 0), /Parameters dropout are not in the study's search space/);
  });
});

describe('buildFinalConfig', () => {
  const spec = specFrom(V5_TEXT, 'sweep');

  test('full pipeline run ids', () => {
    const { config, trainRunId, evalRunId } = buildFinalConfig(spec, V5_PARAMS);
    assert.equal(trainRunId, 'sweep_best_train');
    assert.equal(evalRunId, 'sweep_best_eval');
    assert.equal(getPath(config, 'run_config.mode'), 'full_pipeline');
    assert.equal(getPath(config, 'run_config.train_run_id'), 'sweep_best_train');
    assert.equal(getPath(config, 'run_config.eval_run_id'), 'sweep_best_eval');
  });

  test('best params set', () => {
    const { config } = buildFinalConfig(spec, V5_PARAMS);
    assert.equal(getPath(config, 'model_config.d_model'), 256);
    assert.equal(getPath(config, 'training_config.optimizer.lr'), 0.0002);
  });

  test('ddp as user wrote', () => {
    const { config } = buildFinalConfig(spec, V5_PARAMS);
    assert.equal(getPath(config, 'device_config.ddp_enabled'), true);
  });
});

describe('searchSpaceFingerprint', () => {
  const lr: SearchParam = { name: 'lr', path: 'training_config.optimizer.lr', type: 'float', low: 1e-5, high: 1e-3, log: true, source: 'user' };
  const layers: SearchParam = { name: 'layers', path: 'model_config.encoder_layers', type: 'int', low: 1, high: 4, step: 1, log: false, source: 'nas_lite' };
  const batch: SearchParam = { name: 'batch', path: 'training_config.batch_size', type: 'categorical', choices: [8, 16], source: 'user' };

  test('stable under reordering', () => {
    assert.equal(searchSpaceFingerprint([lr, layers, batch]), searchSpaceFingerprint([batch, lr, layers]));
  });

  test('defaults written out', () => {
    // An int without step samples like step 1, and a missing log like log: false.
    const { step: _step, log: _log, ...bare } = layers;
    assert.equal(searchSpaceFingerprint([bare]), searchSpaceFingerprint([layers]));
  });

  test('source ignored', () => {
    assert.equal(searchSpaceFingerprint([{ ...layers, source: 'user' }]), searchSpaceFingerprint([layers]));
  });

  const changes: Array<[string, SearchParam[]]> = [
    ['high changed', [{ ...lr, high: 2e-3 }, layers, batch]],
    ['low changed', [{ ...lr, low: 1e-6 }, layers, batch]],
    ['log changed', [{ ...lr, log: false }, layers, batch]],
    ['step changed', [lr, { ...layers, step: 2 }, batch]],
    ['choice added', [lr, layers, { ...batch, choices: [8, 16, 32] }]],
    ['choice order', [lr, layers, { ...batch, choices: [16, 8] }]],
    ['path changed', [lr, { ...layers, path: 'model_config.cross_attn_layers' }, batch]],
    ['name changed', [{ ...lr, name: 'learning_rate' }, layers, batch]],
    ['param removed', [lr, layers]],
  ];
  for (const [name, space] of changes) {
    test(name, () => {
      assert.notEqual(searchSpaceFingerprint(space), searchSpaceFingerprint([lr, layers, batch]));
    });
  }

  test('canonical JSON', () => {
    assert.deepEqual(JSON.parse(searchSpaceFingerprint([batch])), [
      { name: 'batch', path: 'training_config.batch_size', type: 'categorical', low: null, high: null, step: null, log: false, choices: [8, 16] },
    ]);
  });
});

describe('objectiveColumnFor', () => {
  const cases: Array<[string, string]> = [
    ['val_auprc', 'Val auprc'],
    ['Val_AUPRC', 'Val auprc'],
    ['VAL_f1', 'Val f1'],
    ['auprc', 'Val auprc'],
    ['AUROC', 'Val auroc'],
    ['val_val_loss', 'Val val_loss'],
  ];
  for (const [metric, column] of cases) {
    test(metric, () => {
      assert.equal(objectiveColumnFor(metric), column);
    });
  }

  for (const invalid of ['', 'val_', 'val auprc']) {
    test(`${JSON.stringify(invalid)} rejected`, () => {
      assert.throws(() => objectiveColumnFor(invalid), /Invalid objective metric/);
    });
  }
});
