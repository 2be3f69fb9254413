/**
 * The study workflow: Optuna's ask/tell loop, one child workflow per trial.
 *
 * Optuna's storage is the trial store. This workflow keeps only what it needs to schedule: the
 * trial budget, the running trials and a summary of finished ones for queries. It asks a trial
 * with a key it derives from its own history, so a retried ask returns the same trial; trial
 * workflows tell Optuna themselves and then signal this workflow by ID, which reaches the
 * current run even after a continue-as-new. That is why children are started with the ABANDON
 * parent-close policy: they must outlive the run that started them.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ActivityFailure,
  ApplicationFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { PIPELINE_START_FAILURE, WORKER_SHUTDOWN_FAILURE } from '../activities/failureTypes';
import type { FinalRunRecord, StudyActivities, StudyRef } from '../activities/studyActivities';
import type { TrainingActivities, TrainingResult } from '../activities/training';
import type { StudySpec } from '../common/types';
import {
  setTrialBudgetUpdate,
  stopStudySignal,
  studyProgressQuery,
  trialFinishedSignal,
  type ReportedValue,
  type StopMode,
  type StudyProgress,
  type TrialOutcome,
  type TrialSummary,
} from './messages';
import { trialWorkflowId } from './ids';
import { isFiniteValue, trialWorkflow, type TrialWorkflowInput } from './trial';

export interface RunningTrial {
  number: number;
  params: Record<string, unknown>;
  runId: string;
}

/** Scheduling state; carried across continue-as-new, so plain JSON only (arrays, never Map). */
export interface StudyState {
  /** Run ID of the first run of this chain: the prefix of every ask key. */
  chainId: string;
  studyName: string;
  /** Prefix of run ids, fixed when the Optuna study was created so a resumed study keeps it. */
  runIdPrefix: string;
  warning: string | null;
  askCount: number;
  startedAtMs: number;
  nTrials: number;
  counted: number;
  running: RunningTrial[];
  trials: TrialSummary[];
  inbox: Array<TrialOutcome & { tellRequired?: boolean }>;
  stop: StopMode | null;
  cancelSent: boolean;
  finalRun: FinalRunRecord | null;
}

export interface StudyWorkflowInput {
  spec: StudySpec;
  state?: StudyState;
  /** Continue-as-new once the history has this many events; Temporal's own suggestion also triggers it. */
  historyEventLimit?: number;
}

export interface StudyResult {
  studyName: string;
  requestedStudyName: string;
  nTrials: number;
  counted: number;
  states: Record<string, number>;
  best: TrialSummary | null;
  trialsCsv: string;
  bestParamsYaml: string;
  finalRun: FinalRunRecord | null;
  stop: StopMode | null;
  warning: string | null;
  trials: TrialSummary[];
}

const DEFAULT_HISTORY_EVENT_LIMIT = 10_000;

/** Hand-backs by shutting-down workers that the final run tolerates before it is recorded as failed. */
const MAX_FINAL_RUN_HAND_BACKS = 100;

const optuna = proxyActivities<StudyActivities>({
  // See the same options in trial.ts: this limit decides how soon a call lost with its worker runs again.
  startToCloseTimeout: '75 seconds',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

class StudyRun {
  private readonly spec: StudySpec;
  private readonly state: StudyState;
  private phase: StudyProgress['phase'] = 'opening';
  /** Bumped by every handler, so the main loop wakes for any message. */
  private wakeups = 0;

  constructor(private readonly input: StudyWorkflowInput) {
    this.spec = input.spec;
    this.state = input.state ?? {
      chainId: workflowInfo().runId,
      studyName: input.spec.studyName,
      runIdPrefix: input.spec.runIdPrefix,
      warning: null,
      askCount: 0,
      startedAtMs: Date.now(),
      nTrials: input.spec.nTrials,
      counted: 0,
      running: [],
      trials: [],
      inbox: [],
      stop: null,
      cancelSent: false,
      finalRun: null,
    };
    if (input.state) this.phase = 'searching';
  }

  // --- message handlers -------------------------------------------------------------------

  onTrialFinished(outcome: TrialOutcome): void {
    this.state.inbox.push(outcome);
    this.wakeups++;
  }

  onTrialWorkflowFailed(number: number, runId: string, error: Error): void {
    if (!this.state.running.some((t) => t.number === number)) return;
    const cause = error.cause instanceof Error ? error.cause.message : error.message;
    const reason = `trial workflow ended without a result: ${cause}`;
    this.state.inbox.push({ number, state: 'FAIL', value: null, reason, runId, attempts: 0, lastEpoch: 0, tellRequired: true });
    this.wakeups++;
  }

  onStop(mode: StopMode): void {
    if (this.state.stop === 'now') return;
    this.state.stop = mode;
    log.info('Stop requested', { study: this.state.studyName, mode });
    this.wakeups++;
  }

  validateBudget(nTrials: number): void {
    const started = this.state.counted + this.state.running.length;
    if (!Number.isInteger(nTrials) || nTrials < 1) {
      throw new Error(`nTrials must be an integer of at least 1, but got ${nTrials}`);
    }
    if (nTrials < started) {
      throw new Error(`nTrials must be at least ${started} (trials already finished or running), but got ${nTrials}`);
    }
  }

  setBudget(nTrials: number): number {
    log.info('Trial budget changed', { study: this.state.studyName, from: this.state.nTrials, to: nTrials });
    this.state.nTrials = nTrials;
    this.wakeups++;
    return nTrials;
  }

  progress(): StudyProgress {
    return {
      studyName: this.state.studyName,
      requestedStudyName: this.spec.studyName,
      phase: this.phase,
      nTrials: this.state.nTrials,
      counted: this.state.counted,
      running: this.state.running.map((t) => t.number),
      stop: this.state.stop,
      best: this.best(),
      trials: this.state.trials,
      artifactDir: this.artifactDir(),
      startedAtMs: this.state.startedAtMs,
      warning: this.state.warning,
      searchSpace: this.spec.searchSpace,
      epochs: configuredEpochs(this.spec),
    };
  }

  // --- main loop ----------------------------------------------------------------------------

  async execute(): Promise<StudyResult> {
    if (!this.input.state) await this.open();
    this.phase = 'searching';

    for (;;) {
      // Taken before any await below: a message that arrives while an activity runs must still
      // wake the wait at the end of this iteration.
      const seen = this.wakeups;
      await this.absorbFinishedTrials();
      await this.cancelRunningOnStopNow();
      if (this.shouldContinueAsNew()) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof studyWorkflow>({ ...this.input, state: this.state });
      }
      if (this.canStartTrial()) {
        await this.startTrial();
        continue;
      }
      if (this.state.running.length === 0) break;

      // Draining means no new trial will start: the study was stopped, timed out or met its budget.
      this.phase = this.willStartMoreTrials() ? 'searching' : 'draining';
      // Wake at the budget's deadline too, unless it has passed already (then only messages matter).
      const untilTimeout = this.msUntilTimeout();
      if (untilTimeout) await condition(() => this.wakeups !== seen, untilTimeout);
      else await condition(() => this.wakeups !== seen);
    }

    return await this.finishSearch();
  }

  private async open(): Promise<void> {
    const opened = await optuna.openStudy({
      study: this.studyRef(),
      searchSpace: this.spec.searchSpace,
      runIdPrefix: this.spec.runIdPrefix,
      recoverRunning: true,
    });
    this.state.studyName = opened.studyName;
    this.state.runIdPrefix = opened.runIdPrefix;
    this.state.warning = opened.warning;
    this.state.counted = opened.counted;
    this.state.trials = opened.trials;
    this.state.finalRun = opened.finalRun;
    log.info('Study opened', {
      study: opened.studyName,
      requested: this.spec.studyName,
      finishedTrials: opened.counted,
      nTrials: this.state.nTrials,
      recovered: opened.recovered,
    });
    this.updateDetails();
  }

  private willStartMoreTrials(): boolean {
    const { stop, counted, running, nTrials } = this.state;
    return stop === null && this.msUntilTimeout() !== 0 && counted + running.length < nTrials;
  }

  private canStartTrial(): boolean {
    const { stop, counted, running, nTrials } = this.state;
    if (stop !== null) return false;
    if (this.msUntilTimeout() === 0) return false;
    if (counted + running.length >= nTrials) return false;
    return running.length < this.spec.execution.parallelTrials;
  }

  private async startTrial(): Promise<void> {
    const key = `${this.state.chainId}/${this.state.askCount}`;
    const asked = await optuna.askTrial({
      study: this.studyRef(),
      key,
      searchSpace: this.spec.searchSpace,
      runIdPrefix: this.state.runIdPrefix,
    });
    this.state.askCount++;

    const runId = `${this.state.runIdPrefix}_t${String(asked.number).padStart(4, '0')}`;
    const input: TrialWorkflowInput = {
      spec: this.trialSpec(),
      study: this.studyRef(),
      number: asked.number,
      params: asked.params,
      runId,
      studyWorkflowId: workflowInfo().workflowId,
    };
    try {
      const child = await startChild(trialWorkflow, {
        workflowId: trialWorkflowId(this.state.studyName, asked.number),
        args: [input],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        staticSummary: `trial ${asked.number} of ${this.state.studyName}: ${describeParams(asked.params)}`,
      });
      // Normally the trial's own signal reports its end. This catches a trial workflow that was
      // terminated or failed without one, as long as this run lasts (not after a continue-as-new).
      child.result().catch((error: Error) => this.onTrialWorkflowFailed(asked.number, runId, error));
    } catch (error) {
      // Only a replayed start after a lost task lands here; that trial workflow is ours and running.
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    }

    this.state.running.push({ number: asked.number, params: asked.params, runId });
    this.upsertTrial({ number: asked.number, state: 'RUNNING', value: null, params: asked.params, runId, attempts: 0, reason: null });
    log.info('Trial started', { study: this.state.studyName, trial: asked.number, runId, params: asked.params });
    this.updateDetails();
  }

  private async absorbFinishedTrials(): Promise<void> {
    if (this.state.inbox.length === 0) return;
    const outcomes = this.state.inbox.splice(0, this.state.inbox.length);

    for (const outcome of outcomes) {
      const index = this.state.running.findIndex((t) => t.number === outcome.number);
      // A duplicate signal (a replayed finish) or a trial of an earlier chain changes nothing twice.
      if (index < 0) continue;
      const [trial] = this.state.running.splice(index, 1);
      this.state.counted++;
      if (outcome.tellRequired) {
        const told = await optuna.tellTrial({
          study: this.studyRef(),
          number: outcome.number,
          state: 'FAIL',
          value: null,
          userAttrs: { 'hpo:run_id': outcome.runId, 'hpo:reason': outcome.reason },
        });
        outcome.state = told.state as TrialOutcome['state'];
        outcome.value = told.value;
      }
      this.upsertTrial({
        number: outcome.number,
        state: outcome.state,
        value: outcome.value,
        params: trial!.params,
        runId: outcome.runId,
        attempts: outcome.attempts,
        reason: outcome.reason,
      });
      log.info('Trial finished', { study: this.state.studyName, trial: outcome.number, state: outcome.state, value: outcome.value });
    }

    await optuna.writeStudyArtifacts({ study: this.studyRef(), artifactDir: this.artifactDir(), objectiveMetric: this.spec.objectiveMetric });
    this.updateDetails();
  }

  private async cancelRunningOnStopNow(): Promise<void> {
    if (this.state.stop !== 'now' || this.state.cancelSent) return;
    this.state.cancelSent = true;
    for (const trial of this.state.running) {
      log.info('Cancelling trial', { study: this.state.studyName, trial: trial.number });
      try {
        await getExternalWorkflowHandle(trialWorkflowId(this.state.studyName, trial.number)).cancel();
      } catch (error) {
        log.warn('Could not cancel trial workflow', { study: this.state.studyName, trial: trial.number, error: (error as Error).message });
      }
    }
  }

  private shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= (this.input.historyEventLimit ?? DEFAULT_HISTORY_EVENT_LIMIT);
  }

  private async finishSearch(): Promise<StudyResult> {
    this.phase = 'finished';
    await optuna.failStaleTrials({ study: this.studyRef(), keep: [], reason: 'no trial workflow owned it when the study ended' });
    const artifacts = await optuna.writeStudyArtifacts({ study: this.studyRef(), artifactDir: this.artifactDir(), objectiveMetric: this.spec.objectiveMetric });
    const best = artifacts.best;

    if (this.shouldRunFinalPipeline(best)) {
      this.phase = 'final_run';
      this.updateDetails();
      this.state.finalRun = await this.runFinalPipeline(best!);
      this.phase = 'finished';
    }

    const states: Record<string, number> = {};
    for (const trial of this.state.trials) states[trial.state] = (states[trial.state] ?? 0) + 1;
    log.info('Study finished', { study: this.state.studyName, counted: this.state.counted, best: best?.value ?? null, bestTrial: best?.number ?? null });
    this.updateDetails();
    return {
      studyName: this.state.studyName,
      requestedStudyName: this.spec.studyName,
      nTrials: this.state.nTrials,
      counted: this.state.counted,
      states,
      best,
      trialsCsv: artifacts.trialsCsv,
      bestParamsYaml: artifacts.bestParamsYaml,
      finalRun: this.state.finalRun,
      stop: this.state.stop,
      warning: this.state.warning,
      trials: this.state.trials,
    };
  }

  private shouldRunFinalPipeline(best: TrialSummary | null): boolean {
    if (!this.spec.finalFullPipeline || best === null) return false;
    // A stopped study ends without starting new work; its best trial is still reported.
    if (this.state.stop !== null) return false;
    return this.state.finalRun?.bestTrial !== best.number;
  }

  private async runFinalPipeline(best: TrialSummary): Promise<FinalRunRecord> {
    const training = proxyActivities<TrainingActivities>({
      taskQueue: this.spec.execution.taskQueue,
      startToCloseTimeout: '30 days',
      heartbeatTimeout: `${this.spec.execution.heartbeatTimeoutSeconds} seconds`,
      retry: {
        maximumAttempts: this.spec.execution.maxAttempts,
        initialInterval: '5 seconds',
        nonRetryableErrorTypes: [PIPELINE_START_FAILURE, WORKER_SHUTDOWN_FAILURE],
      },
    });
    const trainRunId = `${this.state.runIdPrefix}_best_train`;
    log.info('Final full-pipeline run started', { study: this.state.studyName, bestTrial: best.number, runId: trainRunId });

    let record: FinalRunRecord | null = null;
    for (let run = 1; record === null; run++) {
      try {
        const result: TrainingResult = await training.runTraining({
          spec: this.trialSpec(),
          studyName: this.state.studyName,
          kind: 'final',
          trialNumber: best.number,
          params: best.params,
          run,
          reportTo: null,
        });
        record = { bestTrial: best.number, trainRunId, end: result.end, reason: result.reason, value: result.value };
      } catch (error) {
        // A worker that shut down handed the run back: run it again elsewhere, as trials do.
        const handedBack = error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.type === WORKER_SHUTDOWN_FAILURE;
        if (handedBack && run < MAX_FINAL_RUN_HAND_BACKS) continue;
        const cause = error instanceof ActivityFailure && error.cause ? error.cause.message : (error as Error).message;
        record = { bestTrial: best.number, trainRunId, end: 'failed', reason: cause, value: null };
      }
    }
    log.info('Final full-pipeline run ended', { study: this.state.studyName, ...record });
    await optuna.recordFinalRun({ study: this.studyRef(), record });
    return record;
  }

  // --- helpers ------------------------------------------------------------------------------

  private studyRef(): StudyRef {
    return {
      storage: this.spec.storage,
      studyName: this.state.studyName,
      direction: this.spec.direction,
      sampler: this.spec.sampler,
      pruner: this.spec.pruner,
    };
  }

  /** Returns the spec that trials get: the run id prefix and artifact folder of the stored study. */
  private trialSpec(): StudySpec {
    return { ...this.spec, runIdPrefix: this.state.runIdPrefix, artifactDir: this.artifactDir() };
  }

  private artifactDir(): string {
    // The artifact folder follows the study that Optuna actually stores (derived or not).
    return this.state.studyName === this.spec.studyName
      ? this.spec.artifactDir
      : this.spec.artifactDir.replace(/[^/\\]+$/, this.state.studyName);
  }

  private msUntilTimeout(): number | null {
    if (this.spec.timeoutMinutes === null) return null;
    return Math.max(0, this.state.startedAtMs + this.spec.timeoutMinutes * 60_000 - Date.now());
  }

  private best(): TrialSummary | null {
    let best: TrialSummary | null = null;
    for (const trial of this.state.trials) {
      if (trial.state !== 'COMPLETE' || !isFiniteValue(trial.value)) continue;
      if (best === null || isBetter(trial.value, best.value as number, this.spec.direction)) best = trial;
    }
    return best;
  }

  private upsertTrial(summary: TrialSummary): void {
    const index = this.state.trials.findIndex((t) => t.number === summary.number);
    if (index >= 0) this.state.trials[index] = summary;
    else this.state.trials.push(summary);
  }

  /** Updates the current details that the web UI shows on the study's page. */
  private updateDetails(): void {
    const best = this.best();
    const lines = [
      `**${this.state.studyName}**: ${this.phase}, ${this.state.counted}/${this.state.nTrials} trials finished`,
      `running: ${this.state.running.map((t) => t.number).join(', ') || 'none'}`,
      best ? `best: trial ${best.number}, ${this.spec.objectiveMetric} = ${formatValue(best.value)}` : 'best: none yet',
    ];
    setCurrentDetails(lines.join('\n\n'));
  }
}

function configuredEpochs(spec: StudySpec): number | null {
  const training = spec.baseConfig.training_config as Record<string, unknown> | undefined;
  return typeof training?.epochs === 'number' ? training.epochs : null;
}

function isBetter(a: number, b: number, direction: StudySpec['direction']): boolean {
  return direction === 'maximize' ? a > b : a < b;
}

function formatValue(value: ReportedValue): string {
  return typeof value === 'number' ? value.toPrecision(6) : String(value);
}

function describeParams(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(([name, value]) => `${name}=${typeof value === 'number' && !Number.isInteger(value) ? value.toPrecision(3) : String(value)}`)
    .join(', ');
}

export async function studyWorkflow(input: StudyWorkflowInput): Promise<StudyResult> {
  const study = new StudyRun(input);
  setHandler(trialFinishedSignal, (outcome) => study.onTrialFinished(outcome));
  setHandler(stopStudySignal, (mode) => study.onStop(mode));
  setHandler(setTrialBudgetUpdate, (nTrials) => study.setBudget(nTrials), { validator: (nTrials) => study.validateBudget(nTrials) });
  setHandler(studyProgressQuery, () => study.progress());
  return await study.execute();
}


