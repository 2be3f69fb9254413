import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import YAML from 'yaml';
import { stringifyForPipeline } from '../../src/activities/pipelineYaml';
import { PYTHON } from '../helpers/fakeStudy';

const config = {
  training_config: { optimizer: { lr: 6e-5, eps: 1e-8, weight_decay: 0.015, betas: [0.9, 0.999] }, epochs: 20 },
  model_config: { eps: -2.5e-7, big: 1.5e21, d_model: 192, name: '1e-8' },
};

/** Reads `text` with PyYAML's safe_load, as a Python pipeline does. */
function pyyamlLoad(text: string): unknown {
  const program = 'import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))';
  const result = spawnSync(PYTHON, ['-c', program], { input: text, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout);
}

test('PyYAML reads exponent floats as floats', () => {
  // PyYAML (YAML 1.1) reads 1e-8 as a string; the pipeline must get the number.
  assert.deepEqual(pyyamlLoad(stringifyForPipeline(config)), config);
});

test('plain YAML output differs from PyYAML', () => {
  // The reason for stringifyForPipeline: the default output does not survive PyYAML.
  assert.notDeepEqual(pyyamlLoad(YAML.stringify(config)), config);
});

test('output parses back with YAML 1.2', () => {
  assert.deepEqual(YAML.parse(stringifyForPipeline(config)), config);
});
