/**
 * Activities of the study task queue: every call the workflows make into Optuna, through the
 * bridge process of this worker. They run at least once, so each one is idempotent (see the
 * bridge's header for how).
 */
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import type { Direction, OptunaComponent, SearchParam, StorageSpec } from '../common/types';
import type { ReportedValue, TrialState, TrialSummary } from '../workflows/messages';
import { searchSpaceFingerprint } from '../config';
import { BridgeRequestError, MissingOptunaError, type OptunaBridge } from './optunaBridge';

/** Reference to a study: everything the bridge needs to load it. */
export interface StudyRef {
  storage: StorageSpec;
  studyName: string;
  direction: Direction;
  sampler: OptunaComponent;
  pruner: OptunaComponent;
}

export interface OpenStudyInput {
  study: StudyRef;
  searchSpace: SearchParam[];
  runIdPrefix: string;
  /** Fail and re-enqueue RUNNING trials: true when a new study workflow starts, false after continue-as-new. */
  recoverRunning: boolean;
}

export interface OpenStudyResult {
  studyName: string;
  runIdPrefix: string;
  derived: boolean;
  warning: string | null;
  recovered: number[];
  counted: number;
  trials: TrialSummary[];
  finalRun: FinalRunRecord | null;
}

export interface FinalRunRecord {
  bestTrial: number;
  trainRunId: string;
  end: string;
  reason: string | null;
  value: ReportedValue;
}

export interface AskInput {
  study: StudyRef;
  key: string;
  searchSpace: SearchParam[];
  runIdPrefix: string;
}

export interface AskResult {
  number: number;
  params: Record<string, unknown>;
  reused: boolean;
}

export interface ReportInput {
  study: StudyRef;
  number: number;
  steps: Array<{ step: number; value: ReportedValue }>;
}

export interface ReportResult {
  shouldPrune: boolean;
  reported: number[];
  skipped: number[];
}

export interface TellInput {
  study: StudyRef;
  number: number;
  state: TrialState;
  value: ReportedValue;
  userAttrs: Record<string, unknown>;
}

export interface TellResult {
  state: string;
  value: ReportedValue;
  alreadyFinished: boolean;
}

export interface ArtifactsInput {
  study: StudyRef;
  artifactDir: string;
  objectiveMetric: string;
}

export interface ArtifactsResult {
  trialsCsv: string;
  bestParamsYaml: string;
  best: TrialSummary | null;
}

interface RawTrial {
  number: number;
  state: string;
  value: ReportedValue;
  params: Record<string, unknown>;
  run_id: string | null;
  attempts: number;
  reason: string | null;
}

function toSummary(raw: RawTrial): TrialSummary {
  return {
    number: raw.number,
    state: raw.state as TrialSummary['state'],
    value: raw.value,
    params: raw.params,
    runId: raw.run_id,
    attempts: raw.attempts,
    reason: raw.reason,
  };
}

function toBridgeRef(ref: StudyRef): Record<string, unknown> {
  return {
    storage: ref.storage,
    study_name: ref.studyName,
    direction: ref.direction,
    sampler: ref.sampler,
    pruner: ref.pruner,
  };
}

function toBridgeSpace(space: SearchParam[]): Array<Record<string, unknown>> {
  return space.map((p) => ({ name: p.name, type: p.type, low: p.low, high: p.high, step: p.step, log: p.log, choices: p.choices }));
}

/** Heartbeat interval of the Optuna activities; their heartbeat timeout (10 s) is set in the workflows. */
const OPTUNA_HEARTBEAT_INTERVAL_MS = 2000;

export function createStudyActivities(bridge: OptunaBridge) {
  /** Turns a rejected request into a non-retryable failure, because the same request gets the same response. */
  async function call(method: string, params: Record<string, unknown>): Promise<any> {
    // Heartbeats while the bridge works (a SQLite lock may take up to 60 s), so a call lost with
    // its worker is retried after the short heartbeat timeout, not the start-to-close timeout.
    const ctx = Context.current();
    ctx.heartbeat();
    const timer = setInterval(() => ctx.heartbeat(), OPTUNA_HEARTBEAT_INTERVAL_MS);
    try {
      return await bridge.call(method, params);
    } catch (error) {
      if (error instanceof BridgeRequestError) {
        throw ApplicationFailure.nonRetryable(error.message, 'OptunaRequestRejected');
      }
      if (error instanceof MissingOptunaError) {
        throw ApplicationFailure.nonRetryable(error.message, 'MissingOptuna');
      }
      throw error;
    } finally {
      clearInterval(timer);
    }
  }

  return {
    async openStudy(input: OpenStudyInput): Promise<OpenStudyResult> {
      const raw = await call('open_study', {
        study: toBridgeRef(input.study),
        search_space: toBridgeSpace(input.searchSpace),
        fingerprint: searchSpaceFingerprint(input.searchSpace),
        run_id_prefix: input.runIdPrefix,
        recover_running: input.recoverRunning,
      });
      if (raw.warning) log.warn(raw.warning, { study: input.study.studyName });
      if (raw.recovered.length > 0) {
        log.warn('Failed trials left RUNNING by a lost study workflow and enqueued their re-runs', {
          study: raw.study_name,
          trials: raw.recovered,
        });
      }
      return {
        studyName: raw.study_name,
        runIdPrefix: raw.run_id_prefix,
        derived: raw.derived,
        warning: raw.warning,
        recovered: raw.recovered,
        counted: raw.counted,
        trials: (raw.trials as RawTrial[]).map(toSummary),
        finalRun: raw.final_run ?? null,
      };
    },

    async askTrial(input: AskInput): Promise<AskResult> {
      const raw = await call('ask', {
        study: toBridgeRef(input.study),
        key: input.key,
        search_space: toBridgeSpace(input.searchSpace),
        run_id_prefix: input.runIdPrefix,
      });
      log.info(raw.reused ? 'Trial asked again with the same key; reusing it' : 'Trial asked', {
        study: input.study.studyName,
        trial: raw.number,
        key: input.key,
      });
      return raw;
    },

    async reportIntermediateValues(input: ReportInput): Promise<ReportResult> {
      const raw = await call('report', { study: toBridgeRef(input.study), number: input.number, steps: input.steps });
      return { shouldPrune: raw.should_prune, reported: raw.reported, skipped: raw.skipped };
    },

    async tellTrial(input: TellInput): Promise<TellResult> {
      const raw = await call('tell', {
        study: toBridgeRef(input.study),
        number: input.number,
        state: input.state.toLowerCase(),
        value: input.value,
        user_attrs: input.userAttrs,
      });
      return { state: raw.state, value: raw.value, alreadyFinished: raw.already_finished };
    },

    async failStaleTrials(input: { study: StudyRef; keep: number[]; reason: string }): Promise<number[]> {
      const raw = await call('fail_stale', { study: toBridgeRef(input.study), keep: input.keep, reason: input.reason });
      if (raw.failed.length > 0) log.warn('Failed trials that no trial workflow owned', { study: input.study.studyName, trials: raw.failed });
      return raw.failed;
    },

    async writeStudyArtifacts(input: ArtifactsInput): Promise<ArtifactsResult> {
      const raw = await call('write_artifacts', {
        study: toBridgeRef(input.study),
        artifact_dir: input.artifactDir,
        objective_metric: input.objectiveMetric,
      });
      return { trialsCsv: raw.trials_csv, bestParamsYaml: raw.best_params_yaml, best: raw.best ? toSummary(raw.best) : null };
    },

    async recordFinalRun(input: { study: StudyRef; record: FinalRunRecord }): Promise<void> {
      await call('set_study_attr', { study: toBridgeRef(input.study), key: 'hpo:final_run', value: input.record });
    },
  };
}

export type StudyActivities = ReturnType<typeof createStudyActivities>;
