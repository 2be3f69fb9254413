/**
 * Checks the loader's search-space, sampler and pruner rules against the real Optuna in the
 * project's virtual environment: whatever the loader accepts, Optuna must construct.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { parse, stringify } from 'yaml';

import type { OptunaComponent, SearchParam } from '../../src/common/types';
import { ConfigError, parseStudySpec } from '../../src/config';

const PYTHON = path.join(__dirname, '..', '..', '.venv', 'bin', 'python');
const V5_TEXT = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'relic', 'v5_hpo.yaml'), 'utf8');

// Builds each distribution and component the way the Optuna bridge does and reports which raise.
const PYTHON_CHECK = `
import json, sys
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

request = json.load(sys.stdin)
def build(param):
    if param["type"] == "float":
        return FloatDistribution(param["low"], param["high"], log=param.get("log", False), step=param.get("step"))
    if param["type"] == "int":
        return IntDistribution(param["low"], param["high"], log=param.get("log", False), step=param.get("step", 1))
    return CategoricalDistribution(param["choices"])

def accepted(make):
    try:
        make()
        return True
    except (ValueError, TypeError):
        return False

result = {
    "params": [accepted(lambda p=p: build(p)) for p in request["params"]],
    "samplers": [accepted(lambda c=c: getattr(optuna.samplers, c["name"])(**c["kwargs"])) for c in request["samplers"]],
    "pruners": [accepted(lambda c=c: getattr(optuna.pruners, c["name"])(**c["kwargs"])) for c in request["pruners"]],
}
print(json.dumps(result))
`;

interface OptunaVerdicts {
  params: boolean[];
  samplers: boolean[];
  pruners: boolean[];
}

function askOptuna(request: { params: object[]; samplers: OptunaComponent[]; pruners: OptunaComponent[] }): OptunaVerdicts {
  const run = spawnSync(PYTHON, ['-c', PYTHON_CHECK], { input: JSON.stringify(request), encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout) as OptunaVerdicts;
}

/** Returns the loaded search parameter, or undefined when the loader rejects the item. */
function loadParam(item: Record<string, unknown>): SearchParam | undefined {
  const doc = parse(V5_TEXT);
  doc.optimization.search_space = [{ name: 'probe', path: 'training_config.optimizer.lr', ...item }];
  doc.nas_lite.enabled = false;
  try {
    return parseStudySpec(stringify(doc), { configPath: '/p/study.yaml', projectDir: '/p' }).spec.searchSpace[0];
  } catch (error) {
    if (error instanceof ConfigError) return undefined;
    throw error;
  }
}

const PARAM_CASES: Array<Record<string, unknown>> = [
  { type: 'float', low: 0.1, high: 1 },
  { type: 'float', low: 1e-5, high: 3e-4, log: true },
  { type: 'float', low: 0, high: 1, step: 0.25 },
  { type: 'float', low: 0, high: 1, step: 0.3 },
  { type: 'float', low: 1, high: 1 },
  { type: 'float', low: 1, high: 0 },
  { type: 'float', low: 0, high: 1, log: true },
  { type: 'float', low: -1, high: 1, log: true },
  { type: 'float', low: 0.1, high: 1, log: true, step: 0.1 },
  { type: 'float', low: 0, high: 1, step: 0 },
  { type: 'float', low: 0, high: 1, step: -0.5 },
  { type: 'int', low: 1, high: 4 },
  { type: 'int', low: 4, high: 4 },
  { type: 'int', low: 5, high: 4 },
  { type: 'int', low: 1, high: 64, log: true },
  { type: 'int', low: 0, high: 64, log: true },
  { type: 'int', low: 1, high: 64, log: true, step: 2 },
  { type: 'int', low: 1, high: 64, log: true, step: 1 },
  { type: 'int', low: 0, high: 10, step: 3 },
  { type: 'int', low: 0, high: 10, step: 0 },
  { type: 'int', low: 1.5, high: 3 },
  { type: 'categorical', choices: [8, 16, 32] },
  { type: 'categorical', choices: ['adamw', 'sgd', null, true] },
  { type: 'categorical', choices: [] },
];

describe('Optuna compatibility', { skip: !fs.existsSync(PYTHON) && `no Python at ${PYTHON}` }, () => {
  test('accepted params construct', () => {
    const loaded = PARAM_CASES.map(loadParam);
    const verdicts = askOptuna({
      params: PARAM_CASES.map((item, index) => loaded[index] ?? item),
      samplers: [],
      pruners: [],
    });

    for (const [index, item] of PARAM_CASES.entries()) {
      // The loader may reject more than Optuna (low == high, fractional int bounds), but never accept more.
      if (loaded[index] !== undefined) assert.ok(verdicts.params[index], `loader accepts, Optuna rejects: ${JSON.stringify(item)}`);
      if (!verdicts.params[index]) assert.equal(loaded[index], undefined, `Optuna rejects, loader accepts: ${JSON.stringify(item)}`);
    }
  });

  test('components construct', () => {
    const configs: Array<[Record<string, unknown>, Record<string, unknown>]> = [
      [{ name: 'TPESampler', seed: 47, multivariate: true }, { name: 'MedianPruner', n_startup_trials: 5, n_warmup_steps: 3 }],
      [{ name: 'RandomSampler', seed: 1 }, { name: 'NopPruner' }],
      [{ name: 'QMCSampler', seed: 2, scramble: true }, { name: 'HyperbandPruner', min_resource: 1, max_resource: 20, reduction_factor: 3 }],
      [{ name: 'CmaEsSampler', n_startup_trials: 3 }, { name: 'PercentilePruner', percentile: 25.0 }],
      [{ name: 'GPSampler', seed: 3 }, { name: 'SuccessiveHalvingPruner', min_resource: 1 }],
      [{ name: 'BruteForceSampler' }, { name: 'ThresholdPruner', lower: 0.1 }],
      [{ name: 'NSGAIISampler', population_size: 10 }, { name: 'WilcoxonPruner', p_threshold: 0.05 }],
    ];
    const specs = configs.map(([sampler, pruner]) => {
      const doc = parse(V5_TEXT);
      doc.optimization.sampler = sampler;
      doc.optimization.pruner = pruner;
      return parseStudySpec(stringify(doc), { configPath: '/p/study.yaml', projectDir: '/p' }).spec;
    });

    const verdicts = askOptuna({ params: [], samplers: specs.map((spec) => spec.sampler), pruners: specs.map((spec) => spec.pruner) });
    for (const [index, spec] of specs.entries()) {
      assert.ok(verdicts.samplers[index], `Optuna rejects ${JSON.stringify(spec.sampler)}`);
      assert.ok(verdicts.pruners[index], `Optuna rejects ${JSON.stringify(spec.pruner)}`);
    }
  });
});
