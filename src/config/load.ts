/**
 * Loading a study config: YAML text to plain data, the checks of schema.ts, and the
 * resolution of every path against the project directory into a `StudySpec`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';

import type { SearchParam, StorageSpec, StudySpec } from '../common/types';
import { isMapping } from './dotpath';
import { cappedTrialCount, planNasLite } from './nasLite';
import { checkObjectiveMetric, objectiveColumnFor } from './objective';
import {
  checkOptimizationRules,
  ConfigError,
  describeValue,
  formatIssuePath,
  parseStructure,
  splitSqliteUrl,
  stepRangeNotices,
  toSearchParam,
  type ConfigIssue,
  type IssuePath,
  type RawIssue,
  type StorageConfig,
  type StudyConfig,
} from './schema';
import { defaultRunIdPrefix } from './trialConfig';

/** Maximum size of a config file. Larger files are rejected before parsing, and real configs are a few kilobytes. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** Explicit tags that still produce plain JSON data. Any other tag could build an object. */
const PLAIN_DATA_TAGS = new Set(
  ['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((name) => `tag:yaml.org,2002:${name}`),
);

export interface LoadStudySpecOptions {
  /** Folder that relative paths are resolved against. Default: the current directory. */
  projectDir?: string;
  /** Start time of the study, which names the default run id prefix. Default: the current time. */
  now?: Date;
  /** Whether to skip the full-pipeline run with the best parameters, overriding `final_full_pipeline`. */
  skipFinalFullPipeline?: boolean;
}

export interface ParseStudySpecOptions extends LoadStudySpecOptions {
  configPath: string;
  projectDir: string;
}

export interface LoadedStudySpec {
  spec: StudySpec;
  /** Things the caller should log: settings that were replaced or have no effect. */
  notices: string[];
}

/** Reads and checks the study config at `configPath`. Throws one ConfigError that lists every problem. */
export function loadStudySpec(configPath: string, options: LoadStudySpecOptions = {}): LoadedStudySpec {
  const absolutePath = path.resolve(configPath);
  const text = readConfigFile(absolutePath);
  return parseStudySpec(text, { ...options, configPath: absolutePath, projectDir: options.projectDir ?? process.cwd() });
}

/** Checks study config text as if it were read from `options.configPath`. Throws one ConfigError that lists every problem. */
export function parseStudySpec(text: string, options: ParseStudySpecOptions): LoadedStudySpec {
  const configPath = path.resolve(options.configPath);
  const projectDir = path.resolve(options.projectDir);

  const source = readYamlData(text);
  if (source.document === undefined) {
    throw new ConfigError(sortByLine(source.issues), configPath);
  }
  const document = source.document;

  const structure = parseStructure(document);
  const optimization = isMapping(document.optimization) ? document.optimization : {};
  const issues = [
    ...structure.issues,
    ...checkOptimizationRules(document),
    ...checkObjectiveMetric(optimization.objective_metric, document),
  ];

  let searchSpace: SearchParam[] = [];
  const notices: string[] = [];
  if (structure.config !== undefined) {
    searchSpace = buildSearchSpace(structure.config, document, notices);
    if (searchSpace.length === 0) {
      issues.push({
        path: ['optimization', 'search_space'],
        message: 'must contain at least one parameter, but the search space is empty and NAS-lite adds none. Add parameters to search_space.',
      });
    }
  }
  if (issues.length > 0 || structure.config === undefined) {
    throw new ConfigError(sortByLine(issues.map((issue) => locateIssue(issue, source.lineOf))), configPath);
  }

  const spec = assembleSpec(structure.config, document, searchSpace, { ...options, configPath, projectDir }, notices);
  return { spec, notices };
}

function readConfigFile(configPath: string): string {
  let stats: fs.Stats;
  try {
    stats = fs.statSync(configPath);
  } catch (error) {
    throw new ConfigError([{ path: '', message: fileErrorMessage(configPath, error) }], configPath);
  }

  if (stats.isDirectory()) {
    const message = `config path ${configPath} is a directory, but a YAML file was expected. Pass the config file itself.`;
    throw new ConfigError([{ path: '', message }], configPath);
  }
  if (stats.size > MAX_CONFIG_BYTES) {
    const message = `config file is ${stats.size} bytes, but at most ${MAX_CONFIG_BYTES} bytes are read. Pass the study's YAML config.`;
    throw new ConfigError([{ path: '', message }], configPath);
  }

  try {
    return fs.readFileSync(configPath, 'utf8');
  } catch (error) {
    throw new ConfigError([{ path: '', message: fileErrorMessage(configPath, error) }], configPath);
  }
}

function fileErrorMessage(configPath: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `config file not found: ${configPath}. Check the path. A relative path is resolved against the current directory.`;
  if (code === 'EACCES' || code === 'EPERM') return `config file ${configPath} cannot be read: permission denied. Check its permissions.`;
  return `config file ${configPath} cannot be read: ${(error as Error).message}.`;
}

// ---------------------------------------------------------------------------------------------
// YAML to plain data

interface YamlData {
  /** The document as plain JSON data, or undefined when `issues` is not empty. */
  document?: Record<string, unknown>;
  issues: ConfigIssue[];
  /** Returns the line of the node at a key path, or of its nearest ancestor that exists. */
  lineOf: (path: IssuePath) => number | undefined;
}

/**
 * Parses YAML 1.2 text (core schema) into plain JSON data. Rejects syntax errors, duplicate
 * keys, tags other than the standard scalar and collection tags, keys that are not scalars,
 * numbers that are not finite or too large to keep exactly, and a document that is not a mapping.
 */
function readYamlData(text: string): YamlData {
  const lineCounter = new LineCounter();
  // NOTE: a YAML 1.1 loader such as PyYAML reads some plain scalars differently (yes/no are
  // booleans there, 1e-5 is a string). Trial configs carry the values as parsed here.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, version: '1.2', schema: 'core' });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  const lineOf = (issuePath: IssuePath): number | undefined => lineOfPath(doc, issuePath, lineAt);
  const issues: ConfigIssue[] = [];

  for (const error of doc.errors) {
    // Duplicate keys are reported by collectDataIssues, which can name the key path.
    if (error.code === 'DUPLICATE_KEY') continue;
    issues.push({ path: '', message: `YAML syntax error: ${error.message}. Fix the YAML at that line.`, line: lineAt(error.pos[0]) });
  }
  for (const warning of doc.warnings) {
    // An unresolved tag also fails the tag check below, which names the key path.
    if (warning.code === 'TAG_RESOLVE_FAILED') continue;
    issues.push({ path: '', message: `YAML warning: ${warning.message}. Fix the YAML at that line.`, line: lineAt(warning.pos[0]) });
  }

  if (doc.contents === null) {
    issues.push({ path: '', message: 'config file is empty. Write the pipeline config with an optimization section.' });
    return { issues, lineOf };
  }
  collectDataIssues(doc.contents, [], issues, lineAt);
  if (issues.length > 0) return { issues, lineOf };

  if (!isMap(doc.contents)) {
    const kind = isSeq(doc.contents) ? 'a list' : `the single value ${describeValue((doc.contents as { value?: unknown }).value)}`;
    const message = `config must be a mapping of sections such as model_config, training_config and optimization, but the document is ${kind}.`;
    return { issues: [{ path: '', message, line: 1 }], lineOf };
  }

  try {
    return { document: doc.toJS({ maxAliasCount: 100 }) as Record<string, unknown>, issues, lineOf };
  } catch (error) {
    // The yaml package throws when aliases expand past maxAliasCount, a sign of an alias bomb.
    return { issues: [{ path: '', message: `YAML aliases cannot be expanded: ${(error as Error).message}. Write the values out.` }], lineOf };
  }
}

function collectDataIssues(node: unknown, nodePath: IssuePath, issues: ConfigIssue[], lineAt: (offset: number) => number): void {
  // An alias repeats its anchor's node, which is checked where it is defined.
  if (node === null || node === undefined || isAlias(node)) return;

  const line = nodeLine(node, lineAt);
  const at = formatIssuePath(nodePath);
  const tag = (node as { tag?: string }).tag;
  if (tag !== undefined && !PLAIN_DATA_TAGS.has(tag)) {
    issues.push({
      path: at,
      message: `has the YAML tag ${tag}, but only plain data is allowed: strings, numbers, booleans, null, mappings and lists. Remove the tag.`,
      line,
    });
    return;
  }

  if (isMap(node)) {
    const keyLines = new Map<string, number | undefined>();
    for (const pair of node.items) {
      const key = pair.key;
      if (!isScalar(key) || key.value === null || typeof key.value === 'object') {
        issues.push({ path: at, message: 'has a key that is not a string, number or boolean. Use plain text keys.', line: nodeLine(key, lineAt) ?? line });
        continue;
      }
      collectDataIssues(key, nodePath, issues, lineAt);

      const name = String(key.value);
      const keyLine = nodeLine(key, lineAt);
      if (keyLines.has(name)) {
        const firstLine = keyLines.get(name);
        issues.push({
          path: formatIssuePath([...nodePath, name]),
          message: `duplicate key: ${name} already appears${firstLine === undefined ? '' : ` on line ${firstLine}`} in the same mapping. Remove one of them.`,
          line: keyLine,
        });
        continue;
      }
      keyLines.set(name, keyLine);

      if (name === '__proto__') {
        issues.push({ path: formatIssuePath([...nodePath, name]), message: 'is not allowed as a key. Rename it.', line: keyLine });
        continue;
      }
      collectDataIssues(pair.value, [...nodePath, name], issues, lineAt);
    }
    return;
  }

  if (isSeq(node)) {
    node.items.forEach((item, index) => collectDataIssues(item, [...nodePath, index], issues, lineAt));
    return;
  }

  if (isScalar(node)) {
    const scalarIssue = checkScalar(node.value, node.source);
    if (scalarIssue !== undefined) issues.push({ path: at, message: scalarIssue, line });
  }
}

function checkScalar(value: unknown, source: string | undefined): string | undefined {
  const written = source ?? String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      return `must be a finite number, but got ${written}. Write a finite number; JSON, which carries the config between processes, has no infinity or NaN.`;
    }
    if (Number.isInteger(value) && !Number.isSafeInteger(value) && /^[-+]?[0-9_]+$/.test(written)) {
      return `is an integer beyond 2^53 - 1, which cannot be kept exactly, but got ${written}. Use a smaller number or quote it as a string.`;
    }
    return undefined;
  }
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return undefined;
  return `is not plain data, but got ${written}. Write a string, number, boolean or null.`;
}

function nodeLine(node: unknown, lineAt: (offset: number) => number): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range === undefined ? undefined : lineAt(range[0]);
}

/** Walks the YAML nodes along a key path and returns the line of the deepest key or item found. */
function lineOfPath(doc: Document, issuePath: IssuePath, lineAt: (offset: number) => number): number | undefined {
  let node: unknown = doc.contents;
  let line = nodeLine(node, lineAt);
  for (const segment of issuePath) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (pair === undefined) break;
      line = nodeLine(pair.key, lineAt) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      node = node.items[segment];
      line = nodeLine(node, lineAt) ?? line;
    } else {
      break;
    }
  }
  return line;
}

/** Sorts issues in file order. Issues without a line keep their order and come last. */
function sortByLine(issues: ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
}

function locateIssue(issue: RawIssue, lineOf: (path: IssuePath) => number | undefined): ConfigIssue {
  return { path: formatIssuePath(issue.path), message: issue.message, line: lineOf(issue.path) };
}

// ---------------------------------------------------------------------------------------------
// Checked config to StudySpec

function buildSearchSpace(config: StudyConfig, document: Record<string, unknown>, notices: string[]): SearchParam[] {
  const userSpace = config.optimization.search_space.map((param) => toSearchParam(param, 'user'));
  const nasPlan = planNasLite(document, userSpace, config.nas_lite);
  notices.push(...nasPlan.skipped);

  const space = [...userSpace, ...nasPlan.added];
  notices.push(...stepRangeNotices(space));
  return space;
}

function assembleSpec(
  config: StudyConfig,
  document: Record<string, unknown>,
  searchSpace: SearchParam[],
  options: ParseStudySpecOptions,
  notices: string[],
): StudySpec {
  const optimization = config.optimization;
  const execution = optimization.execution;
  const studyName = optimization.study_name;
  const projectDir = options.projectDir;

  const nTrials = cappedTrialCount(optimization.budget.n_trials, config.nas_lite);
  if (nTrials < optimization.budget.n_trials) {
    notices.push(`The study runs ${nTrials} trials, not budget.n_trials (${optimization.budget.n_trials}), because nas_lite.max_candidates caps it.`);
  }
  if (!config.nas_lite.enabled && config.nas_lite.max_candidates !== null) {
    notices.push('nas_lite.max_candidates has no effect because nas_lite.enabled is false.');
  }

  const { pruner, sampler } = optimization;
  return {
    studyName,
    configPath: options.configPath,
    projectDir,
    artifactDir: path.join(projectDir, 'artifacts', 'hpo', studyName),
    baseConfig: document,
    objectiveMetric: optimization.objective_metric,
    objectiveColumn: objectiveColumnFor(optimization.objective_metric),
    direction: optimization.direction,
    nTrials,
    timeoutMinutes: optimization.budget.timeout_minutes,
    searchSpace,
    storage: resolveStorage(optimization.storage, studyName, projectDir, notices),
    sampler: { name: sampler.name, kwargs: withoutName(sampler) },
    pruner: { name: pruner.name, kwargs: withoutName(pruner) },
    runIdPrefix: optimization.run_id_prefix ?? defaultRunIdPrefix(options.now ?? new Date()),
    execution: {
      trialMode: execution.trial_mode,
      ddpPerTrial: execution.ddp_per_trial,
      catchOomAsPruned: execution.catch_oom_as_pruned,
      taskQueue: execution.task_queue,
      command: execution.command,
      workdir: path.resolve(projectDir, execution.workdir),
      parallelTrials: execution.parallel_trials,
      heartbeatTimeoutSeconds: execution.heartbeat_timeout_seconds,
      maxAttempts: execution.max_attempts,
      oomRetries: execution.oom_retries,
      retryFailedTrials: execution.retry_failed_trials,
      stallTimeoutMinutes: execution.stall_timeout_minutes,
      killGraceSeconds: execution.kill_grace_seconds,
    },
    finalFullPipeline: options.skipFinalFullPipeline === true ? false : execution.final_full_pipeline,
  };
}

function withoutName(component: Record<string, unknown>): Record<string, unknown> {
  const { name: _name, ...kwargs } = component;
  return kwargs;
}

function resolveStorage(storage: StorageConfig | undefined, studyName: string, projectDir: string, notices: string[]): StorageSpec {
  const defaultJournal = path.join(projectDir, 'artifacts', 'hpo', studyName, 'optuna_journal.log');

  switch (storage?.type ?? 'sqlite') {
    // checkStorageRules has made sure that type url comes with a url.
    case 'url':
      return { kind: 'url', url: storage?.url as string };
    case 'journal':
      return { kind: 'journal', path: storage?.path == null ? defaultJournal : path.resolve(projectDir, storage.path) };
    case 'none':
      notices.push(
        `optimization.storage.type is "none", but the study is kept in the journal file ${defaultJournal} anyway, so that it survives restarts.`,
      );
      return { kind: 'journal', path: defaultJournal };
    case 'sqlite':
      return { kind: 'url', url: absoluteSqliteUrl(storage?.url ?? `sqlite:///artifacts/hpo/${studyName}.db`, projectDir) };
  }
}

/** Makes the database file of a `sqlite:///` URL absolute against `projectDir`. A URL such as `sqlite:////abs.db` is kept. */
function absoluteSqliteUrl(url: string, projectDir: string): string {
  const { file, query } = splitSqliteUrl(url);
  if (file.startsWith('/')) return url;
  return `sqlite:///${path.resolve(projectDir, file)}${query}`;
}
