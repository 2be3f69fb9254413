/**
 * Structure of a study config (zod 4) and the conversion of zod issues into config issues
 * that name the key path, the value that came and the fix.
 *
 * Only `optimization` and `nas_lite` are checked key by key, and unknown keys in them are
 * rejected so that typos surface. The pipeline's own sections pass through untouched.
 */
import { z } from 'zod';

import type { SearchParam } from '../common/types';
import { getPath, isMapping, parseDotPath, resolvedDepth } from './dotpath';

/** A key path as a list of segments: mapping keys and list indexes. */
export type IssuePath = Array<string | number>;

/** One problem in a config, before the loader attaches a line number. */
export interface RawIssue {
  path: IssuePath;
  message: string;
}

/** One problem in a config. `path` is a dot path with list indexes in brackets, or '' for the whole file. */
export interface ConfigIssue {
  path: string;
  message: string;
  /** 1-based line in the config file, when the problem sits at a known node. */
  line?: number;
}

/** Every problem found in a study config, reported at once before anything starts. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];

  constructor(issues: ConfigIssue[], source?: string) {
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    const header = source === undefined ? `Invalid study config (${count}):` : `Invalid study config ${source} (${count}):`;
    super([header, ...issues.map(formatConfigIssue)].join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

function formatConfigIssue(issue: ConfigIssue): string {
  if (issue.path === '') return issue.line === undefined ? `  ${issue.message}` : `  line ${issue.line}: ${issue.message}`;
  const line = issue.line === undefined ? '' : ` (line ${issue.line})`;
  return `  ${issue.path}${line}: ${issue.message}`;
}

/** Formats `['optimization', 'search_space', 2, 'high']` as `optimization.search_space[2].high`. */
export function formatIssuePath(path: IssuePath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? segment : `.${segment}`;
  }
  return text;
}

// Upper limits. NOTE: the limits on durations are this module's choice, not Optuna's. They keep
// every duration that a worker turns into a Node timer below setTimeout's maximum of 2^31 - 1 ms.
export const MAX_TRIALS = 100_000;
export const MAX_PARALLEL_TRIALS = 1024;
export const MAX_TIMEOUT_MINUTES = 525_600;
export const MAX_HEARTBEAT_TIMEOUT_SECONDS = 86_400;
export const MAX_STALL_TIMEOUT_MINUTES = 10_080;
export const MAX_KILL_GRACE_SECONDS = 3_600;
export const MAX_RETRIES = 100;

export const SAMPLER_NAMES = [
  'TPESampler',
  'RandomSampler',
  'CmaEsSampler',
  'GPSampler',
  'NSGAIISampler',
  'NSGAIIISampler',
  'QMCSampler',
  'GridSampler',
  'BruteForceSampler',
  'PartialFixedSampler',
] as const;

export const PRUNER_NAMES = [
  'MedianPruner',
  'NopPruner',
  'PercentilePruner',
  'SuccessiveHalvingPruner',
  'HyperbandPruner',
  'ThresholdPruner',
  'PatientPruner',
  'WilcoxonPruner',
] as const;

export const TRIAL_MODES = ['full_pipeline', 'train_only', 'eval_only'] as const;
export const STORAGE_TYPES = ['sqlite', 'journal', 'url', 'none'] as const;
export const NAS_LITE_METHODS = ['arch_params_hpo'] as const;

/** The trial command when the config names none: the pipeline's own entry point. */
export const DEFAULT_COMMAND = ['python', '-m', 'src.run', '--config', '{config}'];

/**
 * An integer schema. Its custom message marks its issues, because zod reports a string given
 * for an integer as `expected: 'number'`, and the message should ask for an integer.
 */
const EXPECTS_INTEGER = 'expects an integer';
const integer = () => z.int({ error: EXPECTS_INTEGER });

const SEARCH_PARAM_SHAPE = {
  name: z.string().min(1).max(200),
  path: z.string().min(1).max(500),
  type: z.enum(['float', 'int', 'categorical']),
  low: z.number().optional(),
  high: z.number().optional(),
  step: z.number().optional(),
  log: z.boolean().optional(),
  choices: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
};

const BUDGET_SHAPE = {
  n_trials: integer().min(1).max(MAX_TRIALS),
  timeout_minutes: z.number().positive().max(MAX_TIMEOUT_MINUTES).nullable().default(null),
};

const EXECUTION_SHAPE = {
  trial_mode: z.enum(TRIAL_MODES).default('train_only'),
  ddp_per_trial: z.boolean().default(false),
  catch_oom_as_pruned: z.boolean().default(true),
  parallel_trials: integer().min(1).max(MAX_PARALLEL_TRIALS).default(1),
  task_queue: z.string().min(1).default('hpo-gpu'),
  command: z.array(z.string().min(1)).min(1).default(() => [...DEFAULT_COMMAND]),
  workdir: z.string().min(1).default('.'),
  heartbeat_timeout_seconds: z.number().min(5).max(MAX_HEARTBEAT_TIMEOUT_SECONDS).default(60),
  max_attempts: integer().min(1).max(MAX_RETRIES).default(3),
  oom_retries: integer().min(0).max(MAX_RETRIES).default(0),
  retry_failed_trials: integer().min(0).max(MAX_RETRIES).default(0),
  stall_timeout_minutes: z.number().positive().max(MAX_STALL_TIMEOUT_MINUTES).nullable().default(null),
  kill_grace_seconds: z.number().min(0).max(MAX_KILL_GRACE_SECONDS).default(30),
  final_full_pipeline: z.boolean().default(true),
};

const STORAGE_SHAPE = {
  type: z.enum(STORAGE_TYPES).default('sqlite'),
  url: z.string().min(1).nullable().default(null),
  path: z.string().min(1).nullable().default(null),
};

// Samplers and pruners keep every other key as a keyword argument of the Optuna class.
const SAMPLER_SCHEMA = z.looseObject({ name: z.enum(SAMPLER_NAMES).default('TPESampler') }).prefault({});
const PRUNER_SCHEMA = z.looseObject({ name: z.enum(PRUNER_NAMES).default('MedianPruner') }).prefault({});

const OPTIMIZATION_SHAPE = {
  enabled: z.boolean().default(true),
  backend: z.literal('optuna').default('optuna'),
  study_name: z.string(),
  objective_metric: z.string(),
  direction: z.enum(['maximize', 'minimize']).default('maximize'),
  run_id_prefix: z.string().nullable().default(null),
  budget: z.strictObject(BUDGET_SHAPE),
  execution: z.strictObject(EXECUTION_SHAPE).prefault({}),
  storage: z.strictObject(STORAGE_SHAPE).optional(),
  sampler: SAMPLER_SCHEMA,
  pruner: PRUNER_SCHEMA,
  search_space: z.array(z.strictObject(SEARCH_PARAM_SHAPE)).default(() => []),
};

const NAS_LITE_SHAPE = {
  enabled: z.boolean().default(false),
  method: z.enum(NAS_LITE_METHODS).default('arch_params_hpo'),
  max_candidates: integer().min(1).max(MAX_TRIALS).nullable().default(null),
};

export const SearchParamSchema = z.strictObject(SEARCH_PARAM_SHAPE);
export const StorageSchema = z.strictObject(STORAGE_SHAPE);
export const ExecutionSchema = z.strictObject(EXECUTION_SHAPE);
export const NasLiteSchema = z.strictObject(NAS_LITE_SHAPE).prefault({});

/** The whole document: the pipeline sections stay free-form, except that the ones a trial writes into must be mappings. */
export const StudyConfigSchema = z.looseObject({
  run_config: z.record(z.string(), z.unknown()).optional(),
  device_config: z.record(z.string(), z.unknown()).optional(),
  optimization: z.strictObject(OPTIMIZATION_SHAPE),
  nas_lite: NasLiteSchema,
});

export type StudyConfig = z.output<typeof StudyConfigSchema>;
export type OptimizationConfig = StudyConfig['optimization'];
export type SearchParamConfig = z.output<typeof SearchParamSchema>;
export type StorageConfig = z.output<typeof StorageSchema>;
export type NasLiteConfig = z.output<typeof NasLiteSchema>;

/** Keys allowed in each strict section, by section path with list indexes written as `[]`. */
const ALLOWED_KEYS: Record<string, string[]> = {
  optimization: Object.keys(OPTIMIZATION_SHAPE),
  'optimization.budget': Object.keys(BUDGET_SHAPE),
  'optimization.execution': Object.keys(EXECUTION_SHAPE),
  'optimization.storage': Object.keys(STORAGE_SHAPE),
  'optimization.search_space[]': Object.keys(SEARCH_PARAM_SHAPE),
  nas_lite: Object.keys(NAS_LITE_SHAPE),
};

/** Checks the structure of a parsed document and returns the typed config when there are no issues. */
export function parseStructure(document: unknown): { config?: StudyConfig; issues: RawIssue[] } {
  const result = StudyConfigSchema.safeParse(document, { reportInput: true });
  if (result.success) return { config: result.data, issues: [] };
  return { issues: result.error.issues.flatMap(toRawIssues) };
}

const EXPECTED_TYPES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  null: 'null',
};

function toRawIssues(issue: z.core.$ZodIssue): RawIssue[] {
  const path = issue.path.filter((segment): segment is string | number => typeof segment !== 'symbol');
  const pathText = formatIssuePath(path);
  const input = issue.input;

  switch (issue.code) {
    case 'invalid_type':
      return [{ path, message: invalidTypeMessage(path, issue.message === EXPECTS_INTEGER ? 'int' : issue.expected, input) }];

    case 'too_small':
      return [{ path, message: tooSmallMessage(issue.origin, Number(issue.minimum), issue.inclusive !== false, input) }];

    case 'too_big':
      return [{ path, message: tooBigMessage(issue.origin, Number(issue.maximum), input) }];

    case 'invalid_value': {
      const allowed = issue.values.map((value) => JSON.stringify(value)).join(', ');
      const message = `must be one of ${allowed}, but got ${describeValue(input)}. Use one of these values.`;
      return [{ path, message }];
    }

    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(path, key) }));

    case 'invalid_union':
      if (pathText.startsWith('optimization.search_space[') && pathText.includes('.choices[')) {
        return [{ path, message: `must be a string, a number, true/false or null, but got ${describeValue(input)}. Each choice must be a single value.` }];
      }
      return [{ path, message: `has an invalid value ${describeValue(input)}.` }];

    default:
      return [{ path, message: `${issue.message}, but got ${describeValue(input)}.` }];
  }
}

function invalidTypeMessage(path: IssuePath, expected: string, input: unknown): string {
  const expectedText = EXPECTED_TYPES[expected] ?? expected;

  // YAML data has no undefined values, so an undefined input is a missing key.
  if (input === undefined) {
    const key = String(path[path.length - 1]);
    const parent = path.length > 1 ? formatIssuePath(path.slice(0, -1)) : 'the top level of the document';
    return `missing required key. Add ${key} (${expectedText}) to ${parent}.`;
  }

  if (formatIssuePath(path) === 'optimization.execution.command' && typeof input === 'string') {
    return (
      `must be a list of arguments, but got the string ${describeValue(input)}. ` +
      'Give it as a list of arguments such as ["python", "-m", "src.run", "--config", "{config}"]. It is never run through a shell.'
    );
  }
  return `must be ${expectedText}, but got ${describeValue(input)}. Write it as ${expectedText}.`;
}

function tooSmallMessage(origin: string, minimum: number, inclusive: boolean, input: unknown): string {
  if (origin === 'string') return `must not be empty, but got ${describeValue(input)}. Give a non-empty string.`;
  if (origin === 'array') return `must have at least ${minimum} item(s), but got an empty list. Add at least ${minimum}.`;
  if (inclusive) return `must be at least ${minimum}, but got ${describeValue(input)}. Set it to ${minimum} or more.`;
  return `must be greater than ${minimum}, but got ${describeValue(input)}. Set it above ${minimum}.`;
}

function tooBigMessage(origin: string, maximum: number, input: unknown): string {
  if (origin === 'string') return `must be at most ${maximum} characters long, but got ${String(input).length}. Shorten it.`;
  if (origin === 'array') return `must have at most ${maximum} items. Remove some.`;
  return `must be at most ${maximum}, but got ${describeValue(input)}. Set it to ${maximum} or less.`;
}

function unknownKeyMessage(sectionPath: IssuePath, key: string): string {
  const sectionText = formatIssuePath(sectionPath);
  const allowed = ALLOWED_KEYS[sectionText.replace(/\[\d+\]/g, '[]')];
  if (allowed === undefined) return 'unknown key. Remove it.';

  const suggestion = closestWord(key, allowed);
  const hint = suggestion === undefined ? '' : ` Did you mean "${suggestion}"?`;
  return `unknown key.${hint} Allowed keys in ${sectionText}: ${allowed.join(', ')}.`;
}

/** Describes a value for an error message: scalars as JSON, collections by kind. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.length === 0 ? '[]' : `a list ${truncate(JSON.stringify(value))}`;
  if (typeof value === 'object' && value !== null) return 'a mapping';
  return truncate(JSON.stringify(value));
}

function truncate(text: string, maxLength = 80): string {
  return text.length <= maxLength ? text : `${text.slice(0, maxLength - 3)}...`;
}

/** Returns the candidate closest to `word` by edit distance, if it is close enough to be a typo. */
export function closestWord(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const tolerance = Math.max(1, Math.floor(word.length / 3));
  return bestDistance <= tolerance ? best : undefined;
}

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

// ---------------------------------------------------------------------------------------------
// Rules across fields. They run on the raw document and check only the parts whose structure
// is valid, so one run reports structural and cross-field problems together.

/** Study names and run id prefixes become folder names and Temporal workflow ids. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** Keys that every trial config overwrites, so searching them would have no effect. */
const KEYS_SET_BY_OPTIMIZER = ['run_config.mode', 'run_config.train_run_id', 'run_config.eval_run_id', 'device_config.ddp_enabled'];

interface ConstructorArguments {
  accepted: string[];
  required: string[];
}

// Keyword arguments of each constructor in Optuna 5.1.0, read with inspect.signature.
// NopPruner's *args/**kwargs exist only for compatibility, so none are accepted here.
const SAMPLER_ARGUMENTS: Record<(typeof SAMPLER_NAMES)[number], ConstructorArguments> = {
  TPESampler: {
    accepted: [
      'consider_prior', 'prior_weight', 'consider_magic_clip', 'consider_endpoints', 'n_startup_trials',
      'n_ei_candidates', 'gamma', 'weights', 'seed', 'multivariate', 'group', 'warn_independent_sampling',
      'constant_liar', 'constraints_func',
    ],
    required: [],
  },
  RandomSampler: { accepted: ['seed'], required: [] },
  CmaEsSampler: {
    accepted: [
      'x0', 'sigma0', 'n_startup_trials', 'independent_sampler', 'warn_independent_sampling', 'seed',
      'consider_pruned_trials', 'restart_strategy', 'popsize', 'inc_popsize', 'use_separable_cma', 'with_margin',
      'lr_adapt', 'source_trials',
    ],
    required: [],
  },
  GPSampler: {
    accepted: ['seed', 'independent_sampler', 'n_startup_trials', 'deterministic_objective', 'constraints_func', 'warn_independent_sampling'],
    required: [],
  },
  NSGAIISampler: {
    accepted: [
      'population_size', 'mutation', 'mutation_prob', 'crossover', 'crossover_prob', 'swapping_prob', 'seed',
      'constraints_func', 'elite_population_selection_strategy', 'child_generation_strategy', 'after_trial_strategy',
    ],
    required: [],
  },
  NSGAIIISampler: {
    accepted: [
      'population_size', 'mutation', 'mutation_prob', 'crossover', 'crossover_prob', 'swapping_prob', 'seed',
      'constraints_func', 'reference_points', 'dividing_parameter', 'elite_population_selection_strategy',
      'child_generation_strategy', 'after_trial_strategy',
    ],
    required: [],
  },
  QMCSampler: {
    accepted: ['qmc_type', 'scramble', 'seed', 'independent_sampler', 'warn_asynchronous_seeding', 'warn_independent_sampling'],
    required: [],
  },
  GridSampler: { accepted: ['search_space', 'seed'], required: ['search_space'] },
  BruteForceSampler: { accepted: ['seed', 'avoid_premature_stop'], required: [] },
  PartialFixedSampler: { accepted: ['fixed_params', 'base_sampler'], required: ['fixed_params', 'base_sampler'] },
};

const PRUNER_ARGUMENTS: Record<(typeof PRUNER_NAMES)[number], ConstructorArguments> = {
  MedianPruner: { accepted: ['n_startup_trials', 'n_warmup_steps', 'interval_steps', 'n_min_trials'], required: [] },
  NopPruner: { accepted: [], required: [] },
  PercentilePruner: {
    accepted: ['percentile', 'n_startup_trials', 'n_warmup_steps', 'interval_steps', 'n_min_trials'],
    required: ['percentile'],
  },
  SuccessiveHalvingPruner: {
    accepted: ['min_resource', 'reduction_factor', 'min_early_stopping_rate', 'bootstrap_count'],
    required: [],
  },
  HyperbandPruner: { accepted: ['min_resource', 'max_resource', 'reduction_factor', 'bootstrap_count'], required: [] },
  ThresholdPruner: { accepted: ['lower', 'upper', 'n_warmup_steps', 'interval_steps'], required: [] },
  PatientPruner: { accepted: ['wrapped_pruner', 'patience', 'min_delta'], required: ['wrapped_pruner', 'patience'] },
  WilcoxonPruner: { accepted: ['p_threshold', 'n_startup_steps'], required: [] },
};

/** Checks the rules that relate several keys of the `optimization` section to each other and to the document. */
export function checkOptimizationRules(document: Record<string, unknown>): RawIssue[] {
  const optimization = document.optimization;
  if (!isMapping(optimization)) return [];

  return [
    ...checkStudyIdentity(optimization),
    ...checkExecutionRules(optimization.execution),
    ...checkStorageRules(optimization.storage),
    ...checkComponentRules('sampler', optimization.sampler, SAMPLER_ARGUMENTS),
    ...checkComponentRules('pruner', optimization.pruner, PRUNER_ARGUMENTS),
    ...checkSearchSpaceRules(optimization.search_space, document),
    ...checkModelName(document, optimization.search_space),
  ];
}

/**
 * Checks `model_config.model` and any searched choices for it: the name becomes a folder of every
 * run (`logs/<model>/train/<run_id>`), which the orchestrator reads and moves aside, so it must
 * not climb out of the pipeline's folder.
 */
function checkModelName(document: Record<string, unknown>, rawSpace: unknown): RawIssue[] {
  const issues: RawIssue[] = [];
  const modelConfig = document.model_config;
  const model = isMapping(modelConfig) ? modelConfig.model : undefined;
  if (model !== undefined && (typeof model !== 'string' || !isValidName(model))) {
    issues.push({
      path: ['model_config', 'model'],
      message: `${nameRuleText(String(model))} It names the folders logs/<model>/ and models/<model>/ of every run.`,
    });
  }

  if (!Array.isArray(rawSpace)) return issues;
  rawSpace.forEach((param, index) => {
    if (!isMapping(param) || param.path !== 'model_config.model' || !Array.isArray(param.choices)) return;
    param.choices.forEach((choice, choiceIndex) => {
      if (typeof choice === 'string' && isValidName(choice)) return;
      issues.push({
        path: ['optimization', 'search_space', index, 'choices', choiceIndex],
        message: `${nameRuleText(String(choice))} A choice for model_config.model names the run's log and model folders.`,
      });
    });
  });
  return issues;
}

function checkStudyIdentity(optimization: Record<string, unknown>): RawIssue[] {
  const issues: RawIssue[] = [];
  if (optimization.enabled === false) {
    issues.push({
      path: ['optimization', 'enabled'],
      message: 'must be true to run a study, but got false. Set enabled: true.',
    });
  }

  const studyName = optimization.study_name;
  if (typeof studyName === 'string' && !isValidName(studyName)) {
    issues.push({
      path: ['optimization', 'study_name'],
      message: `${nameRuleText(studyName)} It names the study's artifact folder and its Temporal workflow id, so use a name such as "v5_hpo".`,
    });
  }

  const prefix = optimization.run_id_prefix;
  if (typeof prefix === 'string' && !isValidName(prefix)) {
    issues.push({
      path: ['optimization', 'run_id_prefix'],
      message: `${nameRuleText(prefix)} It starts every trial's run id, which the pipeline uses as a folder name.`,
    });
  }
  return issues;
}

export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name) && !name.includes('..');
}

function nameRuleText(name: string): string {
  return (
    'must be 1 to 100 letters, digits, "_", "." or "-", start with a letter or digit and not contain "..", ' +
    `but got ${describeValue(name)}.`
  );
}

function checkExecutionRules(execution: unknown): RawIssue[] {
  if (!isMapping(execution)) return [];
  const issues: RawIssue[] = [];

  const command = execution.command;
  if (Array.isArray(command) && command.length > 0 && command.every((arg) => typeof arg === 'string')) {
    if (!command.some((arg) => arg.includes('{config}'))) {
      issues.push({
        path: ['optimization', 'execution', 'command'],
        message:
          `must contain "{config}" in one of its arguments, which the trial config path replaces, but got ${describeValue(command)}. ` +
          'Add the arguments "--config", "{config}".',
      });
    }
  }

  const taskQueue = execution.task_queue;
  if (typeof taskQueue === 'string' && taskQueue !== '' && taskQueue.trim() !== taskQueue) {
    issues.push({
      path: ['optimization', 'execution', 'task_queue'],
      message: `must not be blank or start or end with whitespace, but got ${describeValue(taskQueue)}. Use the workers' task queue name, such as "hpo-gpu".`,
    });
  }
  return issues;
}

function checkStorageRules(rawStorage: unknown): RawIssue[] {
  const parsed = StorageSchema.safeParse(rawStorage);
  if (rawStorage === undefined || !parsed.success) return [];
  const storage = parsed.data;
  const at = (key: string): IssuePath => ['optimization', 'storage', key];
  const issues: RawIssue[] = [];

  const unusedKey = (key: 'url' | 'path', usedBy: string): void => {
    if (storage[key] === null) return;
    issues.push({
      path: at(key),
      message: `is only used with ${usedBy}, but storage.type is "${storage.type}" and ${key} is ${describeValue(storage[key])}. Remove ${key} or change type.`,
    });
  };

  switch (storage.type) {
    case 'sqlite':
      unusedKey('path', 'type: journal');
      if (storage.url !== null) issues.push(...checkSqliteUrl(storage.url, at('url')));
      break;
    case 'url':
      unusedKey('path', 'type: journal');
      if (storage.url === null) {
        issues.push({ path: at('url'), message: 'missing required key for type: url. Add a storage URL such as "postgresql://user@host/optuna".' });
      } else if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(storage.url)) {
        issues.push({
          path: at('url'),
          message: `must be a SQLAlchemy URL of the form dialect://..., but got ${describeValue(storage.url)}. Use a URL such as "postgresql://user@host/optuna".`,
        });
      }
      break;
    case 'journal':
      unusedKey('url', 'type: sqlite or type: url');
      break;
    case 'none':
      unusedKey('url', 'type: sqlite or type: url');
      unusedKey('path', 'type: journal');
      break;
  }
  return issues;
}

/** Splits `sqlite:///<file>?<query>` into its file and query. The file is absolute when it starts with `/`. */
export function splitSqliteUrl(url: string): { file: string; query: string } {
  const rest = url.slice('sqlite:///'.length);
  const queryStart = rest.indexOf('?');
  if (queryStart === -1) return { file: rest, query: '' };
  return { file: rest.slice(0, queryStart), query: rest.slice(queryStart) };
}

function checkSqliteUrl(url: string, path: IssuePath): RawIssue[] {
  if (!url.startsWith('sqlite:///')) {
    return [{
      path,
      message: `must start with "sqlite:///" for type: sqlite, but got ${describeValue(url)}. Write it as "sqlite:///artifacts/hpo/<study>.db" or set type: url.`,
    }];
  }

  const { file } = splitSqliteUrl(url);
  if (file === '' || file === ':memory:') {
    return [{
      path,
      message: `must name a database file, but got ${describeValue(url)}, which keeps the study in memory and loses it on restart. Write "sqlite:///artifacts/hpo/<study>.db".`,
    }];
  }
  return [];
}

function checkComponentRules(
  section: 'sampler' | 'pruner',
  component: unknown,
  table: Record<string, ConstructorArguments>,
): RawIssue[] {
  if (!isMapping(component)) return [];
  const name = component.name ?? (section === 'sampler' ? 'TPESampler' : 'MedianPruner');
  if (typeof name !== 'string' || !Object.hasOwn(table, name)) return [];

  const { accepted, required } = table[name];
  const issues: RawIssue[] = [];
  for (const key of Object.keys(component)) {
    if (key === 'name' || accepted.includes(key)) continue;
    const suggestion = closestWord(key, accepted);
    const hint = suggestion === undefined ? '' : ` Did you mean "${suggestion}"?`;
    const allowed = accepted.length === 0 ? `${name} takes no arguments` : `${name} accepts ${accepted.join(', ')}`;
    issues.push({
      path: ['optimization', section, key],
      message: `is not an argument of optuna.${section}s.${name} (Optuna 5.1).${hint} ${allowed}.`,
    });
  }

  for (const key of required) {
    if (Object.hasOwn(component, key)) continue;
    issues.push({
      path: ['optimization', section, key],
      message: `missing required key: optuna.${section}s.${name} needs the argument ${key}. Add ${key} to optimization.${section}.`,
    });
  }
  return issues;
}

function checkSearchSpaceRules(rawSpace: unknown, document: Record<string, unknown>): RawIssue[] {
  if (!Array.isArray(rawSpace)) return [];
  const issues: RawIssue[] = [];

  rawSpace.forEach((rawParam, index) => {
    const parsed = SearchParamSchema.safeParse(rawParam);
    if (parsed.success) issues.push(...checkSearchParam(parsed.data, index, document));
  });

  issues.push(...checkUnique(rawSpace, 'name'), ...checkUnique(rawSpace, 'path'));
  return issues;
}

function checkUnique(rawSpace: unknown[], key: 'name' | 'path'): RawIssue[] {
  const firstIndex = new Map<string, number>();
  const issues: RawIssue[] = [];
  rawSpace.forEach((rawParam, index) => {
    const value = isMapping(rawParam) ? rawParam[key] : undefined;
    if (typeof value !== 'string') return;

    const first = firstIndex.get(value);
    if (first === undefined) {
      firstIndex.set(value, index);
      return;
    }
    issues.push({
      path: ['optimization', 'search_space', index, key],
      message: `duplicate ${key} ${describeValue(value)}, already used by search_space[${first}]. Give each parameter a unique ${key}.`,
    });
  });
  return issues;
}

function checkSearchParam(param: SearchParamConfig, index: number, document: Record<string, unknown>): RawIssue[] {
  const at = (key: string): IssuePath => ['optimization', 'search_space', index, key];
  const pathIssues = checkParamPath(param.path, at('path'), document);
  if (param.type === 'categorical') return [...pathIssues, ...checkCategorical(param, at)];
  return [...pathIssues, ...checkNumeric(param, at)];
}

function checkCategorical(param: SearchParamConfig, at: (key: string) => IssuePath): RawIssue[] {
  const issues: RawIssue[] = [];
  for (const key of ['low', 'high', 'step', 'log'] as const) {
    if (param[key] === undefined) continue;
    issues.push({ path: at(key), message: `only float and int parameters take ${key}, but this parameter is categorical. Remove ${key}.` });
  }

  if (param.choices === undefined) {
    issues.push({ path: at('choices'), message: 'missing required key for a categorical parameter. Add a non-empty list of choices.' });
    return issues;
  }
  if (param.choices.length === 0) {
    issues.push({ path: at('choices'), message: 'must not be empty, but got []. List at least one choice.' });
    return issues;
  }

  const seen = new Map<string, number>();
  param.choices.forEach((choice, choiceIndex) => {
    const key = JSON.stringify(choice);
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, choiceIndex);
      return;
    }
    issues.push({
      path: [...at('choices'), choiceIndex],
      message: `repeats the choice ${key} of choices[${first}]. Remove the duplicate.`,
    });
  });
  return issues;
}

function checkNumeric(param: SearchParamConfig, at: (key: string) => IssuePath): RawIssue[] {
  const issues: RawIssue[] = [];
  if (param.choices !== undefined) {
    issues.push({
      path: at('choices'),
      message: `only categorical parameters take choices, but this parameter is ${param.type}. Remove choices or set type: categorical.`,
    });
  }
  for (const key of ['low', 'high'] as const) {
    if (param[key] === undefined) {
      issues.push({ path: at(key), message: `missing required key for ${param.type} parameter. Add low and high.` });
    }
  }
  if (param.low === undefined || param.high === undefined) return issues;

  const rules = param.type === 'int' ? intRules : floatRules;
  return [...issues, ...rules(param.low, param.high, param.step, param.log === true, at)];
}

function floatRules(low: number, high: number, step: number | undefined, log: boolean, at: (key: string) => IssuePath): RawIssue[] {
  const issues: RawIssue[] = [];
  if (step !== undefined && step <= 0) {
    issues.push({ path: at('step'), message: `must be greater than 0, but got ${step}. Use a positive step or remove step.` });
  }
  if (high <= low) {
    issues.push({ path: at('high'), message: `must be greater than low (${low}), but got ${high}. Set high above low.` });
  }
  if (log && step !== undefined) {
    issues.push({
      path: at('step'),
      message: `must not be set when log is true, because Optuna's FloatDistribution forbids both at once, but got ${step}. Remove step or set log: false.`,
    });
  }
  if (log && low <= 0) {
    issues.push({ path: at('low'), message: `must be greater than 0 when log is true, but got ${low}. Raise low above 0 or set log: false.` });
  }
  return issues;
}

function intRules(low: number, high: number, step: number | undefined, log: boolean, at: (key: string) => IssuePath): RawIssue[] {
  const issues: RawIssue[] = [];
  for (const [key, value] of [['low', low], ['high', high]] as const) {
    if (!Number.isSafeInteger(value)) {
      issues.push({ path: at(key), message: `must be an integer for an int parameter, but got ${value}. Use a whole number or set type: float.` });
    }
  }
  if (issues.length > 0) return issues;

  if (step !== undefined && step <= 0) {
    issues.push({ path: at('step'), message: `must be greater than 0, but got ${step}. Use a positive step or remove step.` });
  } else if (step !== undefined && !Number.isSafeInteger(step)) {
    issues.push({ path: at('step'), message: `must be an integer for an int parameter, but got ${step}. Use a whole number.` });
  }
  if (high < low) {
    issues.push({ path: at('high'), message: `must be at least low (${low}), but got ${high}. Set high to low or more.` });
  }
  if (log && low < 1) {
    issues.push({ path: at('low'), message: `must be at least 1 when log is true, but got ${low}. Raise low to 1 or more or set log: false.` });
  }
  if (log && step !== undefined && step !== 1) {
    issues.push({
      path: at('step'),
      message: `must be 1 when log is true, because Optuna's IntDistribution allows no other step with log, but got ${step}. Remove step or set log: false.`,
    });
  }
  return issues;
}

function checkParamPath(path: string, at: IssuePath, document: Record<string, unknown>): RawIssue[] {
  let segments: string[];
  try {
    segments = parseDotPath(path);
  } catch {
    segments = [];
  }
  if (segments.length === 0 || /\s/.test(path)) {
    return [{ path: at, message: `must be a dot path such as "training_config.optimizer.lr", but got ${describeValue(path)}. Separate keys with single dots.` }];
  }

  if (segments[0] === 'optimization' || segments[0] === 'nas_lite') {
    return [{
      path: at,
      message: `must point into the pipeline config, but got ${describeValue(path)}, which is in the ${segments[0]} section that the pipeline ignores. Point it at a key in model_config, training_config or another pipeline section.`,
    }];
  }
  if (KEYS_SET_BY_OPTIMIZER.includes(path)) {
    return [{ path: at, message: `must not be ${describeValue(path)}, because the optimizer sets that key in every trial config. Remove this parameter.` }];
  }

  const depth = resolvedDepth(document, path);
  if (depth < segments.length) return [{ path: at, message: missingPathMessage(document, segments, depth) }];

  const target = getPath(document, path);
  if (isMapping(target)) {
    return [{ path: at, message: `must point to a single value, but "${path}" is a mapping. Point it at a key inside it.` }];
  }
  if (Array.isArray(target)) {
    return [{ path: at, message: `must point to a single value, but "${path}" is a list. Point it at one item, such as "${path}.0".` }];
  }
  return [];
}

function missingPathMessage(document: Record<string, unknown>, segments: string[], depth: number): string {
  const parentPath = segments.slice(0, depth).join('.');
  const parent = depth === 0 ? document : getPath(document, parentPath);
  const missing = segments[depth];
  const where = depth === 0 ? 'the config has no section' : `"${parentPath}" has no key`;

  const suggestion = isMapping(parent) ? closestWord(missing, Object.keys(parent)) : undefined;
  const hint = suggestion === undefined ? '' : ` Did you mean "${suggestion}"?`;
  return `must exist in the config, but ${where} "${missing}".${hint} Fix the path or add the key to the config.`;
}

// ---------------------------------------------------------------------------------------------
// The search space in the form that the workflows and the Optuna bridge use.

/** Converts a checked search-space item into a `SearchParam`, making Optuna's defaults explicit. */
export function toSearchParam(param: SearchParamConfig, source: SearchParam['source']): SearchParam {
  const base = { name: param.name, path: param.path, type: param.type, source };
  if (param.type === 'categorical') return { ...base, choices: [...(param.choices ?? [])] };

  const log = param.log === true;
  if (param.type === 'int') return { ...base, low: param.low, high: param.high, step: param.step ?? 1, log };
  if (param.step === undefined) return { ...base, low: param.low, high: param.high, log };
  return { ...base, low: param.low, high: param.high, step: param.step, log };
}

/**
 * Returns one notice for each stepped parameter whose high is not low plus a whole number of
 * steps: Optuna then lowers high to the last step below it (with a warning of its own).
 */
export function stepRangeNotices(space: SearchParam[]): string[] {
  const notices: string[] = [];
  for (const param of space) {
    if (param.type === 'categorical' || param.step === undefined || param.low === undefined || param.high === undefined) continue;

    const steps = (param.high - param.low) / param.step;
    if (Math.abs(steps - Math.round(steps)) <= 1e-9 * Math.max(1, Math.abs(steps))) continue;

    const lastHigh = param.low + Math.floor(steps) * param.step;
    notices.push(
      `Search parameter "${param.name}": high ${param.high} is not low ${param.low} plus a multiple of step ${param.step}, so Optuna samples at most ${lastHigh}.`,
    );
  }
  return notices;
}

/**
 * Returns a canonical JSON text of the search space: names, paths, types, bounds, steps, log
 * flags and choices, sorted by name, with Optuna's defaults written out. Two spaces that sample
 * the same way get the same text, whatever the order or the `source` of their parameters.
 */
export function searchSpaceFingerprint(space: SearchParam[]): string {
  const canonical = [...space]
    .sort(compareByName)
    .map((param) => {
      if (param.type === 'categorical') {
        return { name: param.name, path: param.path, type: param.type, low: null, high: null, step: null, log: false, choices: param.choices ?? [] };
      }
      const defaultStep = param.type === 'int' ? 1 : null;
      return {
        name: param.name,
        path: param.path,
        type: param.type,
        low: param.low ?? null,
        high: param.high ?? null,
        step: param.step ?? defaultStep,
        log: param.log === true,
        choices: null,
      };
    });
  return JSON.stringify(canonical);
}

/** Orders by code unit, not by locale, so the fingerprint is the same on every machine. */
function compareByName(a: SearchParam, b: SearchParam): number {
  if (a.name < b.name) return -1;
  if (a.name > b.name) return 1;
  return 0;
}
