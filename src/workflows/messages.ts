/**
 * Signals, queries and updates of the study and trial workflows, with the payload types that the
 * client, the workflows and the activities share. Payloads are JSON: non-finite floats travel as
 * the strings 'nan', 'inf' and '-inf' (see `ReportedValue`), because JSON turns NaN into null.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { SearchParam } from '../common/types';

/** Workflow-side trial states; they map one to one onto Optuna's COMPLETE, PRUNED and FAIL. */
export type TrialState = 'COMPLETE' | 'PRUNED' | 'FAIL';

export type ReportedValue = number | 'nan' | 'inf' | '-inf' | null;

/** One finished epoch, as the training activity read it from training_step.csv. */
export interface EpochReport {
  trialNumber: number;
  /** Temporal attempt of the training activity that read this row. */
  attempt: number;
  /** Pipeline run of this trial (a trial re-runs after an out-of-memory error when configured). */
  run: number;
  epoch: number;
  value: ReportedValue;
  workerIdentity: string;
}

export interface TrialOutcome {
  number: number;
  state: TrialState;
  value: ReportedValue;
  reason: string | null;
  runId: string;
  /** Pipeline runs started for this trial, all Temporal attempts of all runs counted. */
  attempts: number;
  /** Last epoch the pipeline finished, 0 when none. */
  lastEpoch: number;
}

export interface TrialProgress {
  number: number;
  runId: string;
  params: Record<string, unknown>;
  status: 'running' | 'reporting' | 'finished';
  attempt: number;
  run: number;
  lastEpoch: number;
  lastValue: ReportedValue;
  /** Every epoch the trial reported, in order (one per step: the first value counts). */
  epochs: Array<{ epoch: number; value: ReportedValue }>;
  workerIdentity: string | null;
  outcome: TrialOutcome | null;
}

export interface TrialSummary {
  number: number;
  state: 'RUNNING' | TrialState;
  value: ReportedValue;
  params: Record<string, unknown>;
  runId: string | null;
  attempts: number;
  reason: string | null;
}

export type StopMode = 'graceful' | 'now';

export interface StudyProgress {
  studyName: string;
  /** The study name in the config; differs from studyName when the search space changed. */
  requestedStudyName: string;
  phase: 'opening' | 'searching' | 'draining' | 'final_run' | 'finished';
  nTrials: number;
  /** Finished trials that count toward nTrials. */
  counted: number;
  running: number[];
  stop: StopMode | null;
  best: TrialSummary | null;
  trials: TrialSummary[];
  artifactDir: string;
  startedAtMs: number;
  warning: string | null;
  /** Search space of the running study, so a second start can tell whether the config changed. */
  searchSpace: SearchParam[];
  /** `training_config.epochs` of the base config, for progress displays; null when absent. */
  epochs: number | null;
}

/** Sent by the training activity after every new epoch, so the pruner can judge it while the trial trains. */
export const epochReportedSignal = defineSignal<[EpochReport]>('epochReported');

/** Sent by a trial workflow to its study when it ends; also reaches the study after a continue-as-new. */
export const trialFinishedSignal = defineSignal<[TrialOutcome]>('trialFinished');

/** `hpo stop`: 'graceful' lets running trials finish and starts none; 'now' also stops them. */
export const stopStudySignal = defineSignal<[StopMode]>('stopStudy');

/** Raises (or lowers, down to the trials already started) the study's trial budget. */
export const setTrialBudgetUpdate = defineUpdate<number, [number]>('setTrialBudget');

export const studyProgressQuery = defineQuery<StudyProgress>('studyProgress');

export const trialProgressQuery = defineQuery<TrialProgress>('trialProgress');
