import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { parse, stringify } from 'yaml';

import { ConfigError, loadStudySpec, parseStudySpec } from '../../src/config';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const V5_PATH = path.join(FIXTURES, 'relic', 'v5_hpo.yaml');
const V5_TEXT = fs.readFileSync(V5_PATH, 'utf8');
const PROJECT_DIR = '/srv/project';
const NOW = new Date(Date.UTC(2025, 2, 4, 5, 6, 7));

// Parsed YAML that the test tables edit freely.
type Doc = any;

function parseText(text: string, options: { skipFinalFullPipeline?: boolean } = {}) {
  return parseStudySpec(text, { configPath: `${PROJECT_DIR}/study.yaml`, projectDir: PROJECT_DIR, now: NOW, ...options });
}

/** Returns the real v5 HPO config as YAML text after `change` has edited its parsed form. */
function v5With(change: (doc: Doc) => void): string {
  const doc = parse(V5_TEXT);
  change(doc);
  return stringify(doc);
}

function configErrorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  return assert.fail('expected a ConfigError, but nothing was thrown');
}

function issueAt(error: ConfigError, issuePath: string) {
  return error.issues.find((issue) => issue.path === issuePath);
}

describe('v5_hpo.yaml', () => {
  const { spec, notices } = loadStudySpec(V5_PATH, { projectDir: PROJECT_DIR, now: NOW });

  test('study identity', () => {
    assert.equal(spec.studyName, 'v5_hpo');
    assert.equal(spec.configPath, V5_PATH);
    assert.equal(spec.projectDir, PROJECT_DIR);
    assert.equal(spec.artifactDir, '/srv/project/artifacts/hpo/v5_hpo');
  });

  test('objective', () => {
    assert.equal(spec.objectiveMetric, 'val_auprc');
    assert.equal(spec.objectiveColumn, 'Val auprc');
    assert.equal(spec.direction, 'maximize');
  });

  test('budget capped by max_candidates', () => {
    // nTrials = min(budget.n_trials 30, nas_lite.max_candidates 20).
    assert.equal(spec.nTrials, 20);
    assert.equal(spec.timeoutMinutes, 720);
    assert.ok(notices.some((notice) => notice.includes('runs 20 trials')));
  });

  test('six user params', () => {
    assert.deepEqual(
      spec.searchSpace.map((param) => [param.name, param.path, param.type]),
      [
        ['optimizer_lr', 'training_config.optimizer.lr', 'float'],
        ['weight_decay', 'training_config.optimizer.weight_decay', 'float'],
        ['batch_size', 'training_config.batch_size', 'categorical'],
        ['d_model', 'model_config.d_model', 'categorical'],
        ['encoder_layers', 'model_config.encoder_layers', 'int'],
        ['cross_attn_layers', 'model_config.cross_attn_layers', 'int'],
      ],
    );
    // NAS-lite adds nothing: the user already searches all three architecture paths.
    assert.ok(spec.searchSpace.every((param) => param.source === 'user'));
  });

  test('param bounds', () => {
    assert.deepEqual(spec.searchSpace[0], {
      name: 'optimizer_lr', path: 'training_config.optimizer.lr', type: 'float', source: 'user', low: 1e-5, high: 3e-4, log: true,
    });
    assert.deepEqual(spec.searchSpace[2].choices, [8, 16, 32]);
    assert.deepEqual(spec.searchSpace[4], {
      name: 'encoder_layers', path: 'model_config.encoder_layers', type: 'int', source: 'user', low: 1, high: 4, step: 1, log: false,
    });
  });

  test('storage made absolute', () => {
    assert.deepEqual(spec.storage, { kind: 'url', url: 'sqlite:////srv/project/artifacts/hpo/v5_hpo.db' });
  });

  test('sampler and pruner kwargs', () => {
    assert.deepEqual(spec.sampler, { name: 'TPESampler', kwargs: { seed: 47 } });
    assert.deepEqual(spec.pruner, { name: 'MedianPruner', kwargs: { n_startup_trials: 5, n_warmup_steps: 3 } });
  });

  test('execution defaults', () => {
    assert.deepEqual(spec.execution, {
      trialMode: 'train_only',
      ddpPerTrial: false,
      catchOomAsPruned: true,
      taskQueue: 'hpo-gpu',
      command: ['python', '-m', 'src.run', '--config', '{config}'],
      workdir: PROJECT_DIR,
      parallelTrials: 1,
      heartbeatTimeoutSeconds: 60,
      maxAttempts: 3,
      oomRetries: 0,
      retryFailedTrials: 0,
      stallTimeoutMinutes: null,
      killGraceSeconds: 30,
    });
    assert.equal(spec.finalFullPipeline, true);
  });

  test('run id prefix from now', () => {
    // The default prefix is the study's start time in UTC.
    assert.equal(spec.runIdPrefix, '20250304_050607');
  });

  test('base config is whole document', () => {
    assert.deepEqual(spec.baseConfig, parse(V5_TEXT));
  });

  test('spec is plain JSON', () => {
    // The spec crosses Temporal payloads, so a JSON round trip must not change it.
    assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec);
  });

  test('relative config path', () => {
    const relative = path.relative(process.cwd(), V5_PATH);
    const loaded = loadStudySpec(relative, { projectDir: PROJECT_DIR, now: NOW });
    assert.equal(loaded.spec.configPath, V5_PATH);
  });

  test('projectDir defaults to cwd', () => {
    const loaded = loadStudySpec(V5_PATH, { now: NOW });
    assert.equal(loaded.spec.projectDir, process.cwd());
  });

  test('skipFinalFullPipeline override', () => {
    const loaded = loadStudySpec(V5_PATH, { projectDir: PROJECT_DIR, now: NOW, skipFinalFullPipeline: true });
    assert.equal(loaded.spec.finalFullPipeline, false);
  });
});

describe('valid configs', () => {
  test('minimal defaults', () => {
    const { spec, notices } = loadStudySpec(path.join(FIXTURES, 'configs', 'minimal.yaml'), { projectDir: PROJECT_DIR, now: NOW });
    assert.equal(spec.direction, 'maximize');
    assert.equal(spec.timeoutMinutes, null);
    assert.equal(spec.nTrials, 5);
    assert.deepEqual(spec.sampler, { name: 'TPESampler', kwargs: {} });
    assert.deepEqual(spec.pruner, { name: 'MedianPruner', kwargs: {} });
    // Without a storage section the study goes to artifacts/hpo/<study>.db.
    assert.deepEqual(spec.storage, { kind: 'url', url: 'sqlite:////srv/project/artifacts/hpo/minimal.db' });
    assert.equal(spec.execution.trialMode, 'train_only');
    assert.equal(spec.finalFullPipeline, true);
    assert.deepEqual(notices, []);
  });

  test('nas-only study', () => {
    const { spec } = loadStudySpec(path.join(FIXTURES, 'configs', 'nas_only.yaml'), { projectDir: PROJECT_DIR, now: NOW });
    assert.deepEqual(spec.searchSpace.map((param) => param.name), ['d_model', 'encoder_layers', 'cross_attn_layers']);
    assert.ok(spec.searchSpace.every((param) => param.source === 'nas_lite'));
    assert.equal(spec.nTrials, 12);
    assert.equal(spec.runIdPrefix, 'nas_run');
    assert.deepEqual(spec.storage, { kind: 'journal', path: '/srv/project/state/nas.journal' });
  });

  test('objective metric spellings', () => {
    for (const metric of ['val_auprc', 'Val_AUPRC', 'auprc', 'AUPRC']) {
      const { spec } = parseText(v5With((doc) => { doc.optimization.objective_metric = metric; }));
      assert.equal(spec.objectiveColumn, 'Val auprc', metric);
    }
  });

  test('metric without logging list', () => {
    // Without training_config.logging.validation_metrics any well-formed metric is accepted.
    const { spec } = parseText(v5With((doc) => {
      delete doc.training_config.logging;
      doc.optimization.objective_metric = 'val_loss';
    }));
    assert.equal(spec.objectiveColumn, 'Val loss');
  });

  test('execution keys', () => {
    const { spec } = parseText(v5With((doc) => {
      Object.assign(doc.optimization.execution, {
        trial_mode: 'full_pipeline',
        ddp_per_trial: true,
        catch_oom_as_pruned: false,
        parallel_trials: 4,
        task_queue: 'gpu-a100',
        command: ['torchrun', '--standalone', '--nproc_per_node=2', '--module', 'src.run', '--config={config}'],
        workdir: '../relic',
        heartbeat_timeout_seconds: 5,
        max_attempts: 1,
        oom_retries: 2,
        retry_failed_trials: 1,
        stall_timeout_minutes: 90,
        kill_grace_seconds: 0,
        final_full_pipeline: false,
      });
    }));
    assert.deepEqual(spec.execution, {
      trialMode: 'full_pipeline',
      ddpPerTrial: true,
      catchOomAsPruned: false,
      taskQueue: 'gpu-a100',
      command: ['torchrun', '--standalone', '--nproc_per_node=2', '--module', 'src.run', '--config={config}'],
      workdir: '/srv/relic',
      parallelTrials: 4,
      heartbeatTimeoutSeconds: 5,
      maxAttempts: 1,
      oomRetries: 2,
      retryFailedTrials: 1,
      stallTimeoutMinutes: 90,
      killGraceSeconds: 0,
    });
    assert.equal(spec.finalFullPipeline, false);
  });

  test('absolute workdir kept', () => {
    const { spec } = parseText(v5With((doc) => { doc.optimization.execution.workdir = '/opt/relic'; }));
    assert.equal(spec.execution.workdir, '/opt/relic');
  });

  test('run_id_prefix used', () => {
    const { spec } = parseText(v5With((doc) => { doc.optimization.run_id_prefix = 'sweep-2'; }));
    assert.equal(spec.runIdPrefix, 'sweep-2');
  });

  test('pruner kwargs passed through', () => {
    const { spec } = parseText(v5With((doc) => {
      doc.optimization.pruner = { name: 'HyperbandPruner', min_resource: 1, max_resource: 20, reduction_factor: 3 };
      doc.optimization.sampler = { name: 'RandomSampler' };
    }));
    assert.deepEqual(spec.pruner, { name: 'HyperbandPruner', kwargs: { min_resource: 1, max_resource: 20, reduction_factor: 3 } });
    assert.deepEqual(spec.sampler, { name: 'RandomSampler', kwargs: {} });
  });

  test('sampler name defaults', () => {
    const { spec } = parseText(v5With((doc) => { doc.optimization.sampler = { seed: 3 }; }));
    assert.deepEqual(spec.sampler, { name: 'TPESampler', kwargs: { seed: 3 } });
  });

  test('step range notice', () => {
    // Optuna lowers high to low + k * step, so the loader returns a notice.
    const { spec, notices } = parseText(v5With((doc) => { doc.optimization.search_space[4].step = 2; }));
    assert.equal(spec.searchSpace[4].step, 2);
    assert.ok(notices.some((notice) => notice.includes('"encoder_layers"') && notice.includes('at most 3')));
  });

  test('list item path', () => {
    const { spec } = parseText(v5With((doc) => {
      doc.optimization.search_space.push({ name: 'head_width', path: 'model_config.mlp_head.hidden_dims.0', type: 'int', low: 64, high: 256, step: 64 });
    }));
    assert.equal(spec.searchSpace[6].path, 'model_config.mlp_head.hidden_dims.0');
  });

  test('standard tags accepted', () => {
    const text = V5_TEXT.replace('seed: 47\n  train_run_id', 'seed: !!int 47\n  train_run_id').replace('name: "TMP"', 'name: !!str TMP');
    const { spec } = parseText(text);
    assert.equal((spec.baseConfig.run_config as Doc).seed, 47);
    assert.equal((spec.baseConfig.data_config as Doc).benchmark.name, 'TMP');
  });

  test('anchors and aliases', () => {
    const text = V5_TEXT.replace('max_lr: 0.00006', 'max_lr: &peak 0.00006\n    peak_copy: *peak');
    const { spec } = parseText(text);
    assert.equal((spec.baseConfig.training_config as Doc).scheduler.peak_copy, 0.00006);
  });

  test('free-form sections pass through', () => {
    const { spec } = parseText(`${V5_TEXT}\ntopology_evaluate:\n  unknown_key: [1, 2]\n  1: numeric key\n`);
    assert.deepEqual(spec.baseConfig.topology_evaluate, { unknown_key: [1, 2], 1: 'numeric key' });
  });
});

describe('storage resolution', () => {
  const cases: Array<[string, unknown, unknown]> = [
    ['sqlite relative', { type: 'sqlite', url: 'sqlite:///artifacts/x.db' }, { kind: 'url', url: 'sqlite:////srv/project/artifacts/x.db' }],
    ['sqlite absolute', { type: 'sqlite', url: 'sqlite:////data/optuna.db' }, { kind: 'url', url: 'sqlite:////data/optuna.db' }],
    ['sqlite parent dir', { type: 'sqlite', url: 'sqlite:///../shared/x.db' }, { kind: 'url', url: 'sqlite:////srv/shared/x.db' }],
    ['sqlite query kept', { type: 'sqlite', url: 'sqlite:///x.db?timeout=30' }, { kind: 'url', url: 'sqlite:////srv/project/x.db?timeout=30' }],
    ['sqlite default url', { type: 'sqlite' }, { kind: 'url', url: 'sqlite:////srv/project/artifacts/hpo/v5_hpo.db' }],
    ['url unchanged', { type: 'url', url: 'postgresql://optuna@db:5432/hpo' }, { kind: 'url', url: 'postgresql://optuna@db:5432/hpo' }],
    ['mysql url', { type: 'url', url: 'mysql+pymysql://u:p@h/db' }, { kind: 'url', url: 'mysql+pymysql://u:p@h/db' }],
    ['journal relative', { type: 'journal', path: 'state/j.log' }, { kind: 'journal', path: '/srv/project/state/j.log' }],
    ['journal absolute', { type: 'journal', path: '/var/j.log' }, { kind: 'journal', path: '/var/j.log' }],
    ['journal default', { type: 'journal' }, { kind: 'journal', path: '/srv/project/artifacts/hpo/v5_hpo/optuna_journal.log' }],
    ['none', { type: 'none' }, { kind: 'journal', path: '/srv/project/artifacts/hpo/v5_hpo/optuna_journal.log' }],
  ];
  for (const [name, storage, expected] of cases) {
    test(name, () => {
      const { spec } = parseText(v5With((doc) => { doc.optimization.storage = storage; }));
      assert.deepEqual(spec.storage, expected);
    });
  }

  test('none logs a notice', () => {
    const { notices } = parseText(v5With((doc) => { doc.optimization.storage = { type: 'none' }; }));
    assert.ok(notices.some((notice) => notice.includes('"none"') && notice.includes('optuna_journal.log')));
  });

  test('missing section defaults', () => {
    const { spec } = parseText(v5With((doc) => { delete doc.optimization.storage; }));
    assert.deepEqual(spec.storage, { kind: 'url', url: 'sqlite:////srv/project/artifacts/hpo/v5_hpo.db' });
  });
});

interface InvalidCase {
  name: string;
  change: (doc: Doc) => void;
  path: string;
  fragment: string;
}

const space = (doc: Doc, index: number): Doc => doc.optimization.search_space[index];

const INVALID_CASES: InvalidCase[] = [
  // Types and missing keys.
  { name: 'n_trials string', change: (d) => { d.optimization.budget.n_trials = 'thirty'; }, path: 'optimization.budget.n_trials', fragment: 'must be an integer, but got "thirty"' },
  { name: 'n_trials float', change: (d) => { d.optimization.budget.n_trials = 2.5; }, path: 'optimization.budget.n_trials', fragment: 'must be an integer, but got 2.5' },
  { name: 'log not boolean', change: (d) => { space(d, 0).log = 'yes'; }, path: 'optimization.search_space[0].log', fragment: 'must be true or false, but got "yes"' },
  { name: 'execution not mapping', change: (d) => { d.optimization.execution = ['train_only']; }, path: 'optimization.execution', fragment: 'must be a mapping, but got a list' },
  { name: 'study_name missing', change: (d) => { delete d.optimization.study_name; }, path: 'optimization.study_name', fragment: 'missing required key. Add study_name (a string)' },
  { name: 'model name escapes the run folder', change: (d) => { d.model_config.model = '../../etc'; }, path: 'model_config.model', fragment: 'names the folders logs/<model>/' },
  { name: 'searched model name escapes', change: (d) => { d.optimization.search_space.push({ name: 'model', path: 'model_config.model', type: 'categorical', choices: ['v5', '../x'] }); }, path: 'optimization.search_space[6].choices[1]', fragment: 'names the run\'s log and model folders' },
  { name: 'n_trials missing', change: (d) => { delete d.optimization.budget.n_trials; }, path: 'optimization.budget.n_trials', fragment: 'missing required key' },
  { name: 'budget missing', change: (d) => { delete d.optimization.budget; }, path: 'optimization.budget', fragment: 'missing required key' },
  { name: 'objective missing', change: (d) => { delete d.optimization.objective_metric; }, path: 'optimization.objective_metric', fragment: 'missing required key' },
  { name: 'optimization missing', change: (d) => { delete d.optimization; }, path: 'optimization', fragment: 'missing required key. Add optimization (a mapping)' },
  { name: 'run_config not mapping', change: (d) => { d.run_config = 'train'; }, path: 'run_config', fragment: 'must be a mapping, but got "train"' },
  // Float, int and categorical bounds.
  { name: 'float high below low', change: (d) => { space(d, 0).high = 1e-6; }, path: 'optimization.search_space[0].high', fragment: 'must be greater than low (0.00001), but got 0.000001. Set high above low.' },
  { name: 'float high equals low', change: (d) => { space(d, 0).high = 1e-5; }, path: 'optimization.search_space[0].high', fragment: 'must be greater than low' },
  { name: 'float low missing', change: (d) => { delete space(d, 0).low; }, path: 'optimization.search_space[0].low', fragment: 'missing required key for float parameter' },
  { name: 'int high below low', change: (d) => { space(d, 4).high = 0; }, path: 'optimization.search_space[4].high', fragment: 'must be at least low (1), but got 0' },
  { name: 'int fractional bound', change: (d) => { space(d, 4).high = 3.5; }, path: 'optimization.search_space[4].high', fragment: 'must be an integer for an int parameter, but got 3.5' },
  { name: 'int step zero', change: (d) => { space(d, 4).step = 0; }, path: 'optimization.search_space[4].step', fragment: 'must be greater than 0, but got 0' },
  { name: 'int step fractional', change: (d) => { space(d, 4).step = 0.5; }, path: 'optimization.search_space[4].step', fragment: 'must be an integer for an int parameter' },
  { name: 'float step negative', change: (d) => { space(d, 0).log = false; space(d, 0).step = -1e-5; }, path: 'optimization.search_space[0].step', fragment: 'must be greater than 0, but got -0.00001' },
  { name: 'float log with step', change: (d) => { space(d, 0).step = 1e-5; }, path: 'optimization.search_space[0].step', fragment: 'must not be set when log is true' },
  { name: 'float log low zero', change: (d) => { space(d, 1).low = 0; }, path: 'optimization.search_space[1].low', fragment: 'must be greater than 0 when log is true, but got 0' },
  { name: 'float log low negative', change: (d) => { space(d, 1).low = -1; }, path: 'optimization.search_space[1].low', fragment: 'when log is true, but got -1' },
  { name: 'int log low zero', change: (d) => { space(d, 4).low = 0; space(d, 4).log = true; }, path: 'optimization.search_space[4].low', fragment: 'must be at least 1 when log is true, but got 0' },
  { name: 'int log step two', change: (d) => { space(d, 4).log = true; space(d, 4).step = 2; }, path: 'optimization.search_space[4].step', fragment: 'must be 1 when log is true' },
  { name: 'empty choices', change: (d) => { space(d, 2).choices = []; }, path: 'optimization.search_space[2].choices', fragment: 'must not be empty, but got []' },
  { name: 'choices missing', change: (d) => { delete space(d, 2).choices; }, path: 'optimization.search_space[2].choices', fragment: 'missing required key for a categorical parameter' },
  { name: 'duplicate choice', change: (d) => { space(d, 2).choices = [8, 16, 8]; }, path: 'optimization.search_space[2].choices[2]', fragment: 'repeats the choice 8 of choices[0]' },
  { name: 'nested choice', change: (d) => { space(d, 2).choices = [8, [16, 32]]; }, path: 'optimization.search_space[2].choices[1]', fragment: 'must be a string, a number, true/false or null' },
  { name: 'choices on float', change: (d) => { space(d, 0).choices = [1, 2]; }, path: 'optimization.search_space[0].choices', fragment: 'only categorical parameters take choices' },
  { name: 'low on categorical', change: (d) => { space(d, 2).low = 8; }, path: 'optimization.search_space[2].low', fragment: 'only float and int parameters take low' },
  { name: 'unknown param type', change: (d) => { space(d, 0).type = 'loguniform'; }, path: 'optimization.search_space[0].type', fragment: 'must be one of "float", "int", "categorical", but got "loguniform"' },
  // Search-space paths and names.
  { name: 'path not in config', change: (d) => { space(d, 0).path = 'training_config.optimizer.lrr'; }, path: 'optimization.search_space[0].path', fragment: '"training_config.optimizer" has no key "lrr". Did you mean "lr"?' },
  { name: 'section not in config', change: (d) => { space(d, 0).path = 'trainer.lr'; }, path: 'optimization.search_space[0].path', fragment: 'the config has no section "trainer"' },
  { name: 'path syntax', change: (d) => { space(d, 0).path = 'training_config..lr'; }, path: 'optimization.search_space[0].path', fragment: 'must be a dot path' },
  { name: 'path into optimization', change: (d) => { space(d, 0).path = 'optimization.budget.n_trials'; }, path: 'optimization.search_space[0].path', fragment: 'must point into the pipeline config' },
  { name: 'path set by optimizer', change: (d) => { space(d, 2).path = 'run_config.mode'; }, path: 'optimization.search_space[2].path', fragment: 'the optimizer sets that key in every trial config' },
  { name: 'path to mapping', change: (d) => { space(d, 2).path = 'model_config.pooling'; }, path: 'optimization.search_space[2].path', fragment: 'must point to a single value, but "model_config.pooling" is a mapping' },
  { name: 'path to list', change: (d) => { space(d, 2).path = 'model_config.mlp_head.hidden_dims'; }, path: 'optimization.search_space[2].path', fragment: 'is a list. Point it at one item' },
  { name: 'duplicate name', change: (d) => { space(d, 1).name = 'optimizer_lr'; }, path: 'optimization.search_space[1].name', fragment: 'duplicate name "optimizer_lr", already used by search_space[0]' },
  { name: 'duplicate path', change: (d) => { space(d, 1).path = 'training_config.optimizer.lr'; }, path: 'optimization.search_space[1].path', fragment: 'duplicate path "training_config.optimizer.lr", already used by search_space[0]' },
  { name: 'empty name', change: (d) => { space(d, 1).name = ''; }, path: 'optimization.search_space[1].name', fragment: 'must not be empty' },
  { name: 'empty search space', change: (d) => { d.optimization.search_space = []; d.nas_lite.enabled = false; }, path: 'optimization.search_space', fragment: 'must contain at least one parameter' },
  // Sampler and pruner.
  { name: 'unknown sampler', change: (d) => { d.optimization.sampler.name = 'TPE'; }, path: 'optimization.sampler.name', fragment: 'must be one of "TPESampler", "RandomSampler", "CmaEsSampler"' },
  { name: 'unknown pruner', change: (d) => { d.optimization.pruner.name = 'AshaPruner'; }, path: 'optimization.pruner.name', fragment: '"WilcoxonPruner", but got "AshaPruner"' },
  { name: 'sampler kwarg typo', change: (d) => { d.optimization.sampler.seeds = 1; }, path: 'optimization.sampler.seeds', fragment: 'is not an argument of optuna.samplers.TPESampler (Optuna 5.1). Did you mean "seed"?' },
  { name: 'pruner kwarg of other class', change: (d) => { d.optimization.pruner = { name: 'NopPruner', n_startup_trials: 5 }; }, path: 'optimization.pruner.n_startup_trials', fragment: 'NopPruner takes no arguments' },
  { name: 'required pruner kwarg', change: (d) => { d.optimization.pruner = { name: 'PercentilePruner' }; }, path: 'optimization.pruner.percentile', fragment: 'needs the argument percentile' },
  { name: 'sampler not mapping', change: (d) => { d.optimization.sampler = 'TPESampler'; }, path: 'optimization.sampler', fragment: 'must be a mapping, but got "TPESampler"' },
  // Study identity and backend.
  { name: 'enabled false', change: (d) => { d.optimization.enabled = false; }, path: 'optimization.enabled', fragment: 'must be true to run a study, but got false' },
  { name: 'backend not optuna', change: (d) => { d.optimization.backend = 'ray'; }, path: 'optimization.backend', fragment: 'must be one of "optuna", but got "ray"' },
  { name: 'direction invalid', change: (d) => { d.optimization.direction = 'max'; }, path: 'optimization.direction', fragment: 'must be one of "maximize", "minimize", but got "max"' },
  { name: 'run_id_prefix with space', change: (d) => { d.optimization.run_id_prefix = 'my run'; }, path: 'optimization.run_id_prefix', fragment: 'but got "my run"' },
  // Execution.
  { name: 'command as string', change: (d) => { d.optimization.execution.command = 'python -m src.run --config {config}'; }, path: 'optimization.execution.command', fragment: 'Give it as a list of arguments' },
  { name: 'command without placeholder', change: (d) => { d.optimization.execution.command = ['python', '-m', 'src.run']; }, path: 'optimization.execution.command', fragment: 'must contain "{config}"' },
  { name: 'command empty list', change: (d) => { d.optimization.execution.command = []; }, path: 'optimization.execution.command', fragment: 'must have at least 1 item' },
  { name: 'command empty argument', change: (d) => { d.optimization.execution.command = ['python', '', '{config}']; }, path: 'optimization.execution.command[1]', fragment: 'must not be empty' },
  { name: 'trial_mode invalid', change: (d) => { d.optimization.execution.trial_mode = 'train'; }, path: 'optimization.execution.trial_mode', fragment: 'must be one of "full_pipeline", "train_only", "eval_only"' },
  { name: 'task_queue empty', change: (d) => { d.optimization.execution.task_queue = ''; }, path: 'optimization.execution.task_queue', fragment: 'must not be empty' },
  { name: 'task_queue blank', change: (d) => { d.optimization.execution.task_queue = ' gpu '; }, path: 'optimization.execution.task_queue', fragment: 'must not be blank or start or end with whitespace' },
  { name: 'max_attempts zero', change: (d) => { d.optimization.execution.max_attempts = 0; }, path: 'optimization.execution.max_attempts', fragment: 'must be at least 1, but got 0' },
  { name: 'oom_retries negative', change: (d) => { d.optimization.execution.oom_retries = -1; }, path: 'optimization.execution.oom_retries', fragment: 'must be at least 0, but got -1' },
  { name: 'stall timeout zero', change: (d) => { d.optimization.execution.stall_timeout_minutes = 0; }, path: 'optimization.execution.stall_timeout_minutes', fragment: 'must be greater than 0, but got 0' },
  { name: 'kill grace negative', change: (d) => { d.optimization.execution.kill_grace_seconds = -5; }, path: 'optimization.execution.kill_grace_seconds', fragment: 'must be at least 0' },
  // Unknown keys.
  { name: 'optimization typo', change: (d) => { d.optimization.budgte = {}; }, path: 'optimization.budgte', fragment: 'unknown key. Did you mean "budget"? Allowed keys in optimization:' },
  { name: 'execution typo', change: (d) => { d.optimization.execution.ddp_per_trail = true; }, path: 'optimization.execution.ddp_per_trail', fragment: 'Did you mean "ddp_per_trial"?' },
  { name: 'search param typo', change: (d) => { space(d, 0).hihg = 1; }, path: 'optimization.search_space[0].hihg', fragment: 'Allowed keys in optimization.search_space[0]: name, path, type' },
  { name: 'nas_lite typo', change: (d) => { d.nas_lite.max_candidate = 3; }, path: 'nas_lite.max_candidate', fragment: 'Did you mean "max_candidates"?' },
  { name: 'storage typo', change: (d) => { d.optimization.storage.uri = 'x'; }, path: 'optimization.storage.uri', fragment: 'Did you mean "url"?' },
  // Storage.
  { name: 'sqlite with other url', change: (d) => { d.optimization.storage.url = 'postgresql://db/hpo'; }, path: 'optimization.storage.url', fragment: 'must start with "sqlite:///" for type: sqlite' },
  { name: 'sqlite in memory', change: (d) => { d.optimization.storage.url = 'sqlite:///:memory:'; }, path: 'optimization.storage.url', fragment: 'keeps the study in memory' },
  { name: 'url type without url', change: (d) => { d.optimization.storage = { type: 'url' }; }, path: 'optimization.storage.url', fragment: 'missing required key for type: url' },
  { name: 'url without scheme', change: (d) => { d.optimization.storage = { type: 'url', url: 'db.example/hpo' }; }, path: 'optimization.storage.url', fragment: 'must be a SQLAlchemy URL' },
  { name: 'journal with url', change: (d) => { d.optimization.storage = { type: 'journal', url: 'sqlite:///x.db' }; }, path: 'optimization.storage.url', fragment: 'is only used with type: sqlite or type: url' },
  { name: 'unknown storage type', change: (d) => { d.optimization.storage.type = 'redis'; }, path: 'optimization.storage.type', fragment: 'must be one of "sqlite", "journal", "url", "none"' },
  // Objective.
  { name: 'metric not logged', change: (d) => { d.optimization.objective_metric = 'val_mcc'; }, path: 'optimization.objective_metric', fragment: 'must be one of the metrics the pipeline logs (auprc, auroc, f1, accuracy), but got "val_mcc"' },
  { name: 'metric empty after prefix', change: (d) => { d.optimization.objective_metric = 'val_'; }, path: 'optimization.objective_metric', fragment: 'must name a validation metric' },
  { name: 'logging list malformed', change: (d) => { d.training_config.logging.validation_metrics = 'auprc'; }, path: 'training_config.logging.validation_metrics', fragment: 'must be a list of metric names' },
  // NAS-lite.
  { name: 'nas method unknown', change: (d) => { d.nas_lite.method = 'darts'; }, path: 'nas_lite.method', fragment: 'must be one of "arch_params_hpo", but got "darts"' },
  { name: 'max_candidates zero', change: (d) => { d.nas_lite.max_candidates = 0; }, path: 'nas_lite.max_candidates', fragment: 'must be at least 1, but got 0' },
];

describe('invalid configs', () => {
  for (const { name, change, path: issuePath, fragment } of INVALID_CASES) {
    test(name, () => {
      const error = configErrorOf(() => parseText(v5With(change)));
      const issue = issueAt(error, issuePath);
      assert.ok(issue, `no issue at ${issuePath}; got:\n${error.message}`);
      assert.ok(issue.message.includes(fragment), `"${issue.message}" lacks "${fragment}"`);
    });
  }
});

describe('limits', () => {
  const cases: Array<[string, (doc: Doc, value: number) => void, string, number, number]> = [
    ['n_trials', (d, v) => { d.optimization.budget.n_trials = v; }, 'optimization.budget.n_trials', 100_000, 100_001],
    ['parallel_trials', (d, v) => { d.optimization.execution.parallel_trials = v; }, 'optimization.execution.parallel_trials', 1024, 1025],
    ['heartbeat low', (d, v) => { d.optimization.execution.heartbeat_timeout_seconds = v; }, 'optimization.execution.heartbeat_timeout_seconds', 5, 4.9],
    ['heartbeat high', (d, v) => { d.optimization.execution.heartbeat_timeout_seconds = v; }, 'optimization.execution.heartbeat_timeout_seconds', 86_400, 86_401],
    ['timeout_minutes', (d, v) => { d.optimization.budget.timeout_minutes = v; }, 'optimization.budget.timeout_minutes', 525_600, 525_601],
    ['timeout_minutes zero', (d, v) => { d.optimization.budget.timeout_minutes = v; }, 'optimization.budget.timeout_minutes', 0.5, 0],
    ['max_attempts', (d, v) => { d.optimization.execution.max_attempts = v; }, 'optimization.execution.max_attempts', 100, 101],
    ['kill_grace_seconds', (d, v) => { d.optimization.execution.kill_grace_seconds = v; }, 'optimization.execution.kill_grace_seconds', 3600, 3601],
    ['stall_timeout_minutes', (d, v) => { d.optimization.execution.stall_timeout_minutes = v; }, 'optimization.execution.stall_timeout_minutes', 10_080, 10_081],
    ['max_candidates', (d, v) => { d.nas_lite.max_candidates = v; }, 'nas_lite.max_candidates', 100_000, 100_001],
  ];
  for (const [name, set, issuePath, accepted, rejected] of cases) {
    test(`${name} accepts ${accepted}`, () => {
      assert.doesNotThrow(() => parseText(v5With((doc) => set(doc, accepted))));
    });
    test(`${name} rejects ${rejected}`, () => {
      const error = configErrorOf(() => parseText(v5With((doc) => set(doc, rejected))));
      assert.ok(issueAt(error, issuePath), error.message);
    });
  }
});

describe('study names', () => {
  const cases: Array<[string, boolean]> = [
    ['v5_hpo', true],
    ['A', true],
    ['v5.hpo-2', true],
    ['a'.repeat(100), true],
    ['a'.repeat(101), false],
    ['', false],
    ['../x', false],
    ['a/b', false],
    ['a..b', false],
    ['.hidden', false],
    ['-flag', false],
    ['with space', false],
    ['naïve', false],
  ];
  for (const [studyName, valid] of cases) {
    test(`${JSON.stringify(studyName.length > 20 ? `${studyName.slice(0, 5)}...(${studyName.length})` : studyName)} ${valid ? 'valid' : 'invalid'}`, () => {
      const text = v5With((doc) => { doc.optimization.study_name = studyName; });
      if (valid) {
        assert.equal(parseText(text).spec.studyName, studyName);
        return;
      }
      const error = configErrorOf(() => parseText(text));
      assert.ok(issueAt(error, 'optimization.study_name'), error.message);
    });
  }
});

describe('YAML input', () => {
  const cases: Array<[string, string, string]> = [
    ['empty text', '', 'config file is empty'],
    ['only comments', '# nothing here\n', 'config file is empty'],
    ['list document', '- a\n- b\n', 'but the document is a list'],
    ['scalar document', 'just text\n', 'but the document is the single value "just text"'],
    ['two documents', 'a: 1\n---\nb: 2\n', 'multiple documents'],
    ['python tag', 'model: !!python/object/apply:os.system ["id"]\n', 'has the YAML tag tag:yaml.org,2002:python/object/apply:os.system'],
    ['local tag', 'model: !Model v5\n', 'has the YAML tag !Model'],
    ['binary tag', 'blob: !!binary aGk=\n', 'has the YAML tag tag:yaml.org,2002:binary'],
    ['timestamp tag', 'when: !!timestamp 2001-12-14\n', 'has the YAML tag tag:yaml.org,2002:timestamp'],
    ['set tag', 'names: !!set {a, b}\n', 'has the YAML tag tag:yaml.org,2002:set'],
    ['non-specific tag', 'seed: ! 47\n', 'has the YAML tag !'],
    ['infinity', 'clip: .inf\n', 'must be a finite number, but got .inf'],
    ['negative infinity', 'clip: -.Inf\n', 'must be a finite number, but got -.Inf'],
    ['not a number', 'clip: .nan\n', 'must be a finite number, but got .nan'],
    ['huge integer', 'seed: 123456789012345678901\n', 'is an integer beyond 2^53 - 1'],
    ['proto key', 'model_config:\n  __proto__: {polluted: true}\n', 'is not allowed as a key'],
    ['collection key', '? [a, b]\n: c\n', 'has a key that is not a string'],
    ['null key', '~: c\n', 'has a key that is not a string'],
  ];
  for (const [name, text, fragment] of cases) {
    test(name, () => {
      const error = configErrorOf(() => parseText(text));
      assert.ok(error.message.includes(fragment), error.message);
    });
  }

  test('syntax error line', () => {
    const text = V5_TEXT.replace('  seed: 47\n', '  seed: [47\n');
    const error = configErrorOf(() => parseText(text));
    assert.match(error.issues[0].message, /^YAML syntax error: /);
    // The error points at the broken line 3 or the line after it.
    assert.ok([3, 4].includes(error.issues[0].line ?? 0), error.message);
    assert.match(error.message, /line \d+: YAML syntax error/);
  });

  test('duplicate key path and line', () => {
    const text = V5_TEXT.replace('    n_trials: 30\n', '    n_trials: 30\n    n_trials: 40\n');
    const error = configErrorOf(() => parseText(text));
    const issue = issueAt(error, 'optimization.budget.n_trials');
    assert.ok(issue, error.message);
    assert.match(issue.message, /duplicate key: n_trials already appears on line \d+/);
    assert.equal(issue.line, V5_TEXT.split('\n').findIndex((line) => line === '    n_trials: 30') + 2);
  });

  test('duplicate top-level section', () => {
    const error = configErrorOf(() => parseText(`${V5_TEXT}\nnas_lite:\n  enabled: false\n`));
    assert.ok(issueAt(error, 'nas_lite'), error.message);
  });

  test('unsafe tags fixture', () => {
    const error = configErrorOf(() => loadStudySpec(path.join(FIXTURES, 'configs', 'unsafe_tags.yaml'), { projectDir: PROJECT_DIR }));
    assert.deepEqual(
      error.issues.map((issue) => issue.path),
      ['model_config.model', 'model_config.blob', 'model_config.when', 'model_config.names', 'model_config.custom'],
    );
  });

  test('alias bomb', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let level = 1; level <= 6; level += 1) {
      const previous = `*a${level - 1}`;
      lines.push(`a${level}: &a${level} [${Array(10).fill(previous).join(', ')}]`);
    }
    const error = configErrorOf(() => parseText(`${lines.join('\n')}\n`));
    assert.match(error.message, /YAML aliases cannot be expanded/);
  });
});

describe('ConfigError', () => {
  test('reports every issue at once', () => {
    const error = configErrorOf(() => loadStudySpec(path.join(FIXTURES, 'configs', 'many_errors.yaml'), { projectDir: PROJECT_DIR }));
    assert.deepEqual(
      error.issues.map((issue) => issue.path),
      [
        'optimization.study_name',
        'optimization.objective_metric',
        'optimization.budget.n_trials',
        'optimization.execution.command',
        'optimization.sampler.name',
        'optimization.search_space[0].high',
      ],
    );
  });

  test('message lists issues', () => {
    const error = configErrorOf(() => loadStudySpec(path.join(FIXTURES, 'configs', 'many_errors.yaml'), { projectDir: PROJECT_DIR }));
    const lines = error.message.split('\n');
    assert.match(lines[0], /^Invalid study config .*many_errors\.yaml \(6 problems\):$/);
    // One line per issue, each naming its key path.
    assert.equal(lines.length, 1 + error.issues.length);
    for (const [index, issue] of error.issues.entries()) {
      assert.ok(lines[index + 1].includes(issue.path), lines[index + 1]);
      assert.ok(lines[index + 1].includes(issue.message), lines[index + 1]);
    }
  });

  test('error identity', () => {
    const error = configErrorOf(() => parseText(''));
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'ConfigError');
  });

  test('config without optimization', () => {
    const error = configErrorOf(() => loadStudySpec(path.join(FIXTURES, 'relic', 'v3_local_cpu.yaml'), { projectDir: PROJECT_DIR }));
    assert.deepEqual(error.issues.map((issue) => issue.path), ['optimization']);
  });
});

describe('config files', () => {
  let tempDir = '';
  before(() => {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'study-config-'));
  });
  after(() => {
    fs.rmSync(tempDir, { recursive: true, force: true });
  });

  test('missing file', () => {
    const missing = path.join(tempDir, 'absent.yaml');
    const error = configErrorOf(() => loadStudySpec(missing));
    assert.match(error.issues[0].message, /^config file not found: .*absent\.yaml/);
  });

  test('directory', () => {
    const error = configErrorOf(() => loadStudySpec(tempDir));
    assert.match(error.issues[0].message, /is a directory/);
  });

  test('empty file', () => {
    const empty = path.join(tempDir, 'empty.yaml');
    fs.writeFileSync(empty, '');
    const error = configErrorOf(() => loadStudySpec(empty));
    assert.match(error.issues[0].message, /config file is empty/);
  });

  test('file copy loads', () => {
    const copy = path.join(tempDir, 'v5_hpo.yaml');
    fs.copyFileSync(V5_PATH, copy);
    const { spec } = loadStudySpec(copy, { projectDir: tempDir, now: NOW });
    assert.equal(spec.configPath, copy);
    assert.equal(spec.artifactDir, path.join(tempDir, 'artifacts', 'hpo', 'v5_hpo'));
  });
});
