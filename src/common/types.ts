/**
 * Types shared by the client, the workflows and the activities. Everything here crosses a
 * Temporal payload boundary, so it must stay plain JSON: no Map, Set, Date or class instances.
 */

export type Direction = 'maximize' | 'minimize';

/** One search-space parameter, with its dot path into the pipeline config. */
export interface SearchParam {
  name: string;
  path: string;
  type: 'float' | 'int' | 'categorical';
  low?: number;
  high?: number;
  step?: number;
  log?: boolean;
  choices?: Array<string | number | boolean | null>;
  /** 'nas_lite' when the NAS-lite extension added it, 'user' otherwise. */
  source: 'user' | 'nas_lite';
}

/** Storage of the Optuna study: any URL that `optuna.storages.get_storage` accepts, or a journal file. */
export type StorageSpec =
  | { kind: 'url'; url: string }
  | { kind: 'journal'; path: string };

/** An Optuna sampler or pruner chosen by class name, its keyword arguments passed through. */
export interface OptunaComponent {
  name: string;
  kwargs: Record<string, unknown>;
}

export interface ExecutionSpec {
  /** `run_config.mode` written into every trial config. */
  trialMode: string;
  ddpPerTrial: boolean;
  catchOomAsPruned: boolean;
  /** Task queue of the GPU workers that run the training activity. */
  taskQueue: string;
  /** Argument vector of the pipeline command; `{config}` is replaced by the trial config path. */
  command: string[];
  /** Absolute working directory of the pipeline command (the pipeline root). */
  workdir: string;
  parallelTrials: number;
  heartbeatTimeoutSeconds: number;
  /** Attempts of one training run when the infrastructure fails (a lost worker, a timeout). */
  maxAttempts: number;
  /** Extra runs of a trial that ran out of memory, before it is pruned or failed. */
  oomRetries: number;
  /** Extra runs of a trial whose pipeline exited non-zero for its own reasons. */
  retryFailedTrials: number;
  /** A trainer with no new epoch and no log output for this long is stopped; null disables it. */
  stallTimeoutMinutes: number | null;
  /** Seconds between SIGTERM and SIGKILL when a trainer's process group is stopped. */
  killGraceSeconds: number;
}

/** A validated study config: everything the study workflow needs, resolved to absolute paths. */
export interface StudySpec {
  studyName: string;
  /** Absolute path of the config file the study was started from. */
  configPath: string;
  /** Absolute folder that relative paths were resolved against; `artifacts/` lives here. */
  projectDir: string;
  /** Absolute `artifacts/hpo/<study>` folder. */
  artifactDir: string;
  /** The whole config document as the user wrote it, `optimization` and `nas_lite` included. */
  baseConfig: Record<string, unknown>;
  objectiveMetric: string;
  /** CSV column of the objective, e.g. `Val auprc`; matched case-insensitively. */
  objectiveColumn: string;
  direction: Direction;
  /** Total trial budget of the study, after the NAS-lite `max_candidates` cap. */
  nTrials: number;
  timeoutMinutes: number | null;
  searchSpace: SearchParam[];
  storage: StorageSpec;
  sampler: OptunaComponent;
  pruner: OptunaComponent;
  /** Prefix of trial run ids: `<prefix>_t0003`. */
  runIdPrefix: string;
  execution: ExecutionSpec;
  /** Whether the full pipeline runs once with the best parameters after the search. */
  finalFullPipeline: boolean;
}
