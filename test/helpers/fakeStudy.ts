/**
 * Study configs for the fake pipeline (test/fake-pipeline), each in a fresh project folder, and
 * a way to read the Optuna storage back through the real bridge.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parse } from 'csv-parse/sync';
import YAML from 'yaml';
import { bridgePython } from '../../src/activities/optunaBridge';
import type { StudySpec } from '../../src/common/types';
import { loadStudySpec } from '../../src/config';

export const FAKE_PIPELINE_DIR = path.resolve(__dirname, '..', 'fake-pipeline');
export const PYTHON = bridgePython();

export interface FakeStudyOptions {
  studyName: string;
  nTrials: number;
  parallel?: number;
  epochs?: number;
  epochSeconds?: number;
  /** Behaviour per run id, or '*' for every run (see test/fake-pipeline/src/run.py). */
  script?: Record<string, Record<string, unknown>>;
  /** Categorical choices of `model_config.quality`; the value of epoch k is quality * k / epochs. */
  qualities?: number[];
  pruner?: Record<string, unknown>;
  sampler?: Record<string, unknown>;
  execution?: Record<string, unknown>;
  budget?: Record<string, unknown>;
  extraSearchSpace?: Array<Record<string, unknown>>;
  finalFullPipeline?: boolean;
}

export interface FakeStudy {
  projectDir: string;
  configPath: string;
  scriptPath: string;
  runsFile: string;
  spec: StudySpec;
  /** Rewrites the behaviour script; the fake pipeline reads it when a run starts. */
  setScript(script: Record<string, Record<string, unknown>>): void;
  /** Lines `<run_id> <pid>` appended by every run that started. */
  runs(): Array<{ runId: string; pid: number }>;
}

export function makeFakeStudy(options: FakeStudyOptions): FakeStudy {
  const projectDir = fs.mkdtempSync(path.join(os.tmpdir(), `hpo-study-${options.studyName}-`));
  const pipelineDir = path.join(projectDir, 'pipeline');
  fs.cpSync(path.join(FAKE_PIPELINE_DIR, 'src'), path.join(pipelineDir, 'src'), { recursive: true });
  const scriptPath = path.join(projectDir, 'behaviour.json');
  const runsFile = path.join(projectDir, 'runs.txt');

  const setScript = (script: Record<string, Record<string, unknown>>) => {
    const withRuns: Record<string, Record<string, unknown>> = {};
    for (const [key, behaviour] of Object.entries({ '*': {}, ...script })) {
      withRuns[key] = { touch_file_on_start: runsFile, ...behaviour };
    }
    fs.writeFileSync(scriptPath, JSON.stringify(withRuns));
  };
  setScript(options.script ?? {});

  const qualities = options.qualities ?? [0.3, 0.5, 0.7, 0.9];
  const config = {
    run_config: { mode: 'full_pipeline', seed: 1, train_run_id: null, eval_run_id: null },
    device_config: { device: 'cpu', ddp_enabled: false },
    model_config: { model: 'fake', quality: qualities[0] },
    training_config: {
      epochs: options.epochs ?? 4,
      batch_size: 8,
      logging: { validation_metrics: ['auprc', 'auroc'] },
      optimizer: { lr: 0.001 },
    },
    fake_pipeline: { epoch_seconds: options.epochSeconds ?? 0.1, quality_path: 'model_config.quality', script_file: scriptPath },
    optimization: {
      enabled: true,
      backend: 'optuna',
      study_name: options.studyName,
      objective_metric: 'val_auprc',
      direction: 'maximize',
      run_id_prefix: 'test',
      budget: { n_trials: options.nTrials, timeout_minutes: null, ...(options.budget ?? {}) },
      execution: {
        trial_mode: 'train_only',
        parallel_trials: options.parallel ?? 1,
        task_queue: `gpu-${options.studyName}`,
        command: [PYTHON, '-m', 'src.run', '--config', '{config}'],
        workdir: 'pipeline',
        heartbeat_timeout_seconds: 5,
        kill_grace_seconds: 2,
        final_full_pipeline: options.finalFullPipeline ?? false,
        ...(options.execution ?? {}),
      },
      storage: { type: 'sqlite', url: `sqlite:///artifacts/hpo/${options.studyName}.db` },
      sampler: options.sampler ?? { name: 'RandomSampler', seed: 7 },
      pruner: options.pruner ?? { name: 'NopPruner' },
      search_space: [
        { name: 'quality', path: 'model_config.quality', type: 'categorical', choices: qualities },
        ...(options.extraSearchSpace ?? []),
      ],
    },
  };
  const configPath = path.join(projectDir, 'study.yaml');
  fs.writeFileSync(configPath, YAML.stringify(config));
  const { spec } = loadStudySpec(configPath, { projectDir });

  return {
    projectDir,
    configPath,
    scriptPath,
    runsFile,
    spec,
    setScript,
    runs() {
      if (!fs.existsSync(runsFile)) return [];
      return fs
        .readFileSync(runsFile, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [runId, pid] = line.split(' ');
          return { runId: runId!, pid: Number(pid) };
        });
    },
  };
}

export interface StoredTrial {
  number: number;
  state: string;
  value: number | null;
  params: Record<string, unknown>;
  intermediate: Record<string, number>;
  userAttrs: Record<string, unknown>;
}

/** Reads the study straight from its Optuna storage with optuna.load_study, as a user would. */
export function readOptunaStudy(spec: StudySpec, studyName = spec.studyName): StoredTrial[] {
  if (spec.storage.kind !== 'url') throw new Error('readOptunaStudy reads URL storages only');
  const program = `
import json, math, sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])
out = []
for t in study.get_trials(deepcopy=False):
    value = t.value if t.values else None
    if value is not None and value != value:
        value = "nan"
    out.append({"number": t.number, "state": t.state.name, "value": value, "params": t.params,
                "intermediate": {str(k): (v if math.isfinite(v) else str(v)) for k, v in t.intermediate_values.items()},
                "userAttrs": t.user_attrs})
print(json.dumps(out))
`;
  const result = spawnSync(PYTHON, ['-c', program, spec.storage.url, studyName], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`reading the Optuna study failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as StoredTrial[];
}

/** Parses trials.csv as written by the bridge. */
export function readTrialsCsv(file: string): Array<{ trial_number: string; state: string; value: string; run_id: string; params_json: string }> {
  return parse(fs.readFileSync(file, 'utf8'), { columns: true, skip_empty_lines: true });
}
