import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { getPath, hasPath, setPath } from '../../src/config';

function sampleConfig(): Record<string, unknown> {
  return {
    run_config: { mode: 'full_pipeline', train_run_id: null },
    model_config: { d_model: 192, mlp_head: { hidden_dims: [128, 64], dropout: 0.2 } },
    training_config: { optimizer: { lr: 0.00006 } },
  };
}

describe('getPath', () => {
  test('nested key', () => {
    assert.equal(getPath(sampleConfig(), 'training_config.optimizer.lr'), 0.00006);
  });

  test('null value', () => {
    // An existing key with a null value is found, not reported as missing.
    assert.equal(getPath(sampleConfig(), 'run_config.train_run_id'), null);
  });

  test('whole section', () => {
    assert.deepEqual(getPath(sampleConfig(), 'training_config.optimizer'), { lr: 0.00006 });
  });

  test('list index', () => {
    assert.equal(getPath(sampleConfig(), 'model_config.mlp_head.hidden_dims.1'), 64);
  });

  test('missing key names it', () => {
    assert.throws(() => getPath(sampleConfig(), 'training_config.optimizer.beta1'), /"training_config.optimizer" has no key "beta1"/);
  });

  test('missing section names it', () => {
    assert.throws(() => getPath(sampleConfig(), 'data_config.batch'), /the document has no key "data_config"/);
  });

  test('key below a scalar', () => {
    assert.throws(() => getPath(sampleConfig(), 'model_config.d_model.size'), /has no key "size"/);
  });
});

describe('hasPath', () => {
  const cases: Array<[string, boolean]> = [
    ['model_config', true],
    ['model_config.d_model', true],
    ['run_config.train_run_id', true],
    ['model_config.mlp_head.hidden_dims.0', true],
    ['model_config.mlp_head.hidden_dims.2', false],
    ['model_config.mlp_head.hidden_dims.01', false],
    ['model_config.mlp_head.hidden_dims.-1', false],
    ['model_config.d_model.0', false],
    ['model_config.missing', false],
    ['missing', false],
    ['model_config.constructor', false],
    ['model_config.toString', false],
    ['model_config.hasOwnProperty', false],
  ];
  for (const [path, expected] of cases) {
    test(`${path} is ${expected}`, () => {
      assert.equal(hasPath(sampleConfig(), path), expected);
    });
  }

  test('non-object root', () => {
    assert.equal(hasPath(42, 'a'), false);
  });
});

describe('invalid dot paths', () => {
  const invalidPaths = ['', '.model_config', 'model_config.', 'model_config..d_model', 'model_config.__proto__'];
  for (const path of invalidPaths) {
    test(`"${path}" throws`, () => {
      assert.throws(() => hasPath(sampleConfig(), path), /Invalid dot path/);
      assert.throws(() => getPath(sampleConfig(), path), /Invalid dot path/);
      assert.throws(() => setPath(sampleConfig(), path, 1), /Invalid dot path/);
    });
  }
});

describe('setPath', () => {
  test('sets nested value', () => {
    const updated = setPath(sampleConfig(), 'training_config.optimizer.lr', 0.001);
    assert.equal(getPath(updated, 'training_config.optimizer.lr'), 0.001);
  });

  test('keeps sibling keys', () => {
    const updated = setPath(sampleConfig(), 'model_config.mlp_head.dropout', 0.3);
    assert.deepEqual(getPath(updated, 'model_config.mlp_head.hidden_dims'), [128, 64]);
  });

  test('sets list item', () => {
    const updated = setPath(sampleConfig(), 'model_config.mlp_head.hidden_dims.0', 256);
    assert.deepEqual(getPath(updated, 'model_config.mlp_head.hidden_dims'), [256, 64]);
  });

  test('replaces null value', () => {
    const updated = setPath(sampleConfig(), 'run_config.train_run_id', 'run_t0001');
    assert.equal(getPath(updated, 'run_config.train_run_id'), 'run_t0001');
  });

  test('input not mutated', () => {
    const original = sampleConfig();
    const snapshot = sampleConfig();
    const updated = setPath(original, 'model_config.mlp_head.hidden_dims.0', 256);
    assert.deepEqual(original, snapshot);
    // The copy is deep: no nested mapping or list is shared with the input.
    assert.notEqual(getPath(updated, 'model_config.mlp_head'), getPath(original, 'model_config.mlp_head'));
    assert.notEqual(getPath(updated, 'training_config.optimizer'), getPath(original, 'training_config.optimizer'));
  });

  test('value copied', () => {
    const value = { kind: 'cosine' };
    const updated = setPath(sampleConfig(), 'model_config.d_model', value);
    value.kind = 'changed';
    assert.deepEqual(getPath(updated, 'model_config.d_model'), { kind: 'cosine' });
  });

  test('missing key throws', () => {
    assert.throws(() => setPath(sampleConfig(), 'training_config.optimizer.beta1', 0.9), /has no key "beta1"/);
  });

  test('missing section throws', () => {
    assert.throws(() => setPath(sampleConfig(), 'data_config.num_workers', 4), /has no key "data_config"/);
  });

  test('list index out of range throws', () => {
    assert.throws(() => setPath(sampleConfig(), 'model_config.mlp_head.hidden_dims.2', 32), /has no key "2"/);
  });
});
