/**
 * One Optuna trial, from its first epoch to the state Optuna stores for it.
 *
 * The training activity runs on the GPU task queue and signals every finished epoch here; this
 * workflow reports each one to Optuna through the study queue and, when the pruner decides to prune,
 * cancels the activity, which stops the pipeline's process group. The trial ends by telling
 * Optuna its state, then signalling the study workflow; a trial workflow never ends with the
 * trial still RUNNING in the Optuna storage.
 *
 * Every state a trial can reach, and why:
 * - COMPLETE: the pipeline exited 0 with at least one objective value; the value is the best epoch.
 * - PRUNED:   the pruner stopped it mid-training; or it ran out of memory with catch_oom_as_pruned.
 * - FAIL:     the pipeline failed or stalled, the objective column is missing, the infrastructure
 *             failed max_attempts times, the study was stopped with --now, or the value is NaN
 *             (Optuna's own rule).
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState } from '@temporalio/common';
import type { StudyActivities, StudyRef } from '../activities/studyActivities';
import type { TrainingActivities, TrainingInput, TrainingResult } from '../activities/training';
import { PIPELINE_START_FAILURE, WORKER_SHUTDOWN_FAILURE } from '../activities/failureTypes';
import type { StudySpec } from '../common/types';
import {
  epochReportedSignal,
  trialFinishedSignal,
  trialProgressQuery,
  type EpochReport,
  type ReportedValue,
  type TrialOutcome,
  type TrialProgress,
  type TrialState,
} from './messages';

export interface TrialWorkflowInput {
  spec: StudySpec;
  study: StudyRef;
  number: number;
  params: Record<string, unknown>;
  runId: string;
  /** Study workflow to signal with the outcome; its current run receives it, even after a continue-as-new. */
  studyWorkflowId: string;
}

/** Hand-backs by shutting-down workers that a trial tolerates, so a crash loop cannot run forever. */
const MAX_HAND_BACKS = 100;

const optuna = proxyActivities<StudyActivities>({
  // Optuna calls take milliseconds; the limit only bounds a wait for SQLite's lock (60 s at most)
  // and decides how soon a call lost with its study worker runs again. They are retried without
  // limit because a trial must never end RUNNING in the storage.
  startToCloseTimeout: '75 seconds',
  // The activities heartbeat every 2 s, so a call lost with its study worker is retried this soon.
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

function trainingActivities(spec: StudySpec) {
  return proxyActivities<TrainingActivities>({
    taskQueue: spec.execution.taskQueue,
    // One run may train for days; a dead worker is found by the heartbeat timeout, a hung pipeline
    // by the stall timeout, so the start-to-close limit only bounds a runaway run.
    startToCloseTimeout: '30 days',
    heartbeatTimeout: `${spec.execution.heartbeatTimeoutSeconds} seconds`,
    // Optuna gets a pruned or stopped trial's state only once its pipeline has stopped, so the
    // process group never outlives the trial's state change.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      maximumAttempts: spec.execution.maxAttempts,
      initialInterval: '5 seconds',
      backoffCoefficient: 2,
      maximumInterval: '1 minute',
      nonRetryableErrorTypes: [PIPELINE_START_FAILURE, WORKER_SHUTDOWN_FAILURE],
    },
  });
}

/** Decodes a value that crossed JSON; see `ReportedValue`. */
export function isFiniteValue(value: ReportedValue): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

class TrialRun {
  private readonly pending: Array<{ step: number; value: ReportedValue }> = [];
  private readonly epochs: Array<{ epoch: number; value: ReportedValue }> = [];
  private maxStepSeen = 0;
  private lastValue: ReportedValue = null;
  private attempt = 0;
  private run = 0;
  private attemptsBefore = 0;
  private workerIdentity: string | null = null;
  private status: TrialProgress['status'] = 'running';
  private pruneRequested = false;
  private outcome: TrialOutcome | null = null;

  constructor(private readonly input: TrialWorkflowInput) {}

  // --- message handlers -------------------------------------------------------------------

  /**
   * Keeps the first value of each step: a pipeline that restarted (a new attempt, or its own
   * restart) writes epochs that Optuna already has, and those are ignored.
   */
  onEpoch(report: EpochReport): void {
    if (report.run === this.run) this.attempt = Math.max(this.attempt, report.attempt);
    this.workerIdentity = report.workerIdentity;
    this.acceptEpoch(report.epoch, report.value);
    this.updateDetails();
  }

  /**
   * Queues a step for Optuna unless it was seen before. Steps may arrive out of order (a signal
   * retried after a server outage), so the check is by step, not by the highest step.
   */
  private acceptEpoch(epoch: number, value: ReportedValue): void {
    if (this.epochs.some((seen) => seen.epoch === epoch)) return;
    if (epoch >= this.maxStepSeen) {
      this.maxStepSeen = epoch;
      this.lastValue = value;
    }
    this.pending.push({ step: epoch, value });
    this.epochs.push({ epoch, value });
    this.epochs.sort((a, b) => a.epoch - b.epoch);
  }

  /** Updates the current details that the web UI shows on the trial's page, next to the activity's heartbeat. */
  updateDetails(): void {
    const { spec, number, runId } = this.input;
    const epochs = (spec.baseConfig.training_config as Record<string, unknown> | undefined)?.epochs;
    const lines = [
      `**trial ${number}** (${runId}): ${this.status}`,
      `epoch ${this.maxStepSeen}${typeof epochs === 'number' ? `/${epochs}` : ''}: ${spec.objectiveColumn} = ${String(this.lastValue ?? '-')}`,
      `run ${this.run}, attempt ${this.attempt}${this.workerIdentity ? `, worker ${this.workerIdentity}` : ''}`,
    ];
    if (this.outcome) lines.push(`outcome: ${this.outcome.state}${this.outcome.reason ? ` (${this.outcome.reason})` : ''}`);
    setCurrentDetails(lines.join('\n\n'));
  }

  progress(): TrialProgress {
    return {
      number: this.input.number,
      runId: this.input.runId,
      params: this.input.params,
      status: this.status,
      attempt: this.attempt,
      run: this.run,
      lastEpoch: this.maxStepSeen,
      lastValue: this.lastValue,
      epochs: this.epochs,
      workerIdentity: this.workerIdentity,
      outcome: this.outcome,
    };
  }

  // --- main flow ----------------------------------------------------------------------------

  async execute(): Promise<TrialOutcome> {
    let outcome: TrialOutcome;
    try {
      outcome = await this.trainUntilDecided();
    } catch (error) {
      if (isCancellation(error)) {
        // `hpo stop --now` cancels this workflow. Optuna has no cancelled state, so the FAIL reason explains it.
        outcome = this.makeOutcome('FAIL', null, 'stopped: the study was stopped with hpo stop --now');
      } else {
        // A bug or an Optuna call rejected as invalid: the trial still must not stay RUNNING.
        log.error('Trial workflow failed', this.ids({ error: (error as Error).message }));
        outcome = this.makeOutcome('FAIL', null, `trial workflow failed: ${(error as Error).message}`);
      }
      await CancellationScope.nonCancellable(() => this.finish(outcome));
      throw error;
    }
    await this.finish(outcome);
    return outcome;
  }

  private async trainUntilDecided(): Promise<TrialOutcome> {
    const { spec } = this.input;
    let oomRuns = 0;
    let failedRuns = 0;
    let handBacks = 0;

    for (;;) {
      this.run += 1;
      this.attempt = 0;
      const result = await this.trainOnce();
      if (result === 'handedBack') {
        handBacks += 1;
        if (handBacks > MAX_HAND_BACKS) {
          return this.makeOutcome('FAIL', null, `infrastructure: handed back by ${MAX_HAND_BACKS} workers that shut down`);
        }
        log.warn('Worker shut down during training; running the trial on another worker', this.ids({ handBacks }));
        continue;
      }
      if (result === 'pruned') {
        return this.makeOutcome('PRUNED', this.lastValue, `pruned by ${spec.pruner.name} at epoch ${this.maxStepSeen}`);
      }
      if ('infrastructureFailure' in result) {
        return this.makeOutcome('FAIL', null, result.infrastructureFailure);
      }

      // Attempts of finished runs move into attemptsBefore; `attempt` counts the current run only.
      this.attemptsBefore += result.attempt;
      this.attempt = 0;
      await this.flushReports(result);
      if (this.pruneRequested) {
        return this.makeOutcome('PRUNED', this.lastValue, `pruned by ${spec.pruner.name} at epoch ${this.maxStepSeen}`);
      }

      switch (result.end) {
        case 'completed':
          return this.makeOutcome('COMPLETE', result.value, null);
        case 'out_of_memory':
          if (oomRuns < spec.execution.oomRetries) {
            oomRuns += 1;
            log.warn('Trial ran out of memory; running it again', this.ids({ reason: result.reason, retry: oomRuns }));
            continue;
          }
          return this.makeOutcome(spec.execution.catchOomAsPruned ? 'PRUNED' : 'FAIL', result.value, outOfMemoryReason(result.reason));
        case 'failed':
        case 'stopped':
          if (failedRuns < spec.execution.retryFailedTrials) {
            failedRuns += 1;
            log.warn('Pipeline failed; running the trial again', this.ids({ reason: result.reason, retry: failedRuns }));
            continue;
          }
          return this.makeOutcome('FAIL', null, result.reason);
        case 'stalled':
          return this.makeOutcome('FAIL', null, result.reason);
      }
    }
  }

  /** Runs the training activity once while reporting its epochs; returns how that run ended. */
  private async trainOnce(): Promise<TrainingResult | 'pruned' | 'handedBack' | { infrastructureFailure: string }> {
    const { spec } = this.input;
    const activityInput: TrainingInput = {
      spec,
      studyName: this.input.study.studyName,
      kind: 'trial',
      trialNumber: this.input.number,
      params: this.input.params,
      run: this.run,
      reportTo: workflowInfo().workflowId,
    };

    const training = new CancellationScope();
    const done = training.run(() => trainingActivities(spec).runTraining(activityInput));
    let trainingEnded = false;
    const reporting = this.reportWhileTraining(training, () => trainingEnded);
    // Cancelling the workflow (hpo stop --now) rejects the loop's condition() while `done` may
    // still be pending. Without a handler attached here, that rejection is unhandled and fails
    // the workflow task, so the stopped trial waits for task retries. The finally block awaits it.
    reporting.catch(() => undefined);

    try {
      return await done;
    } catch (error) {
      // Once pruned, the trial stays pruned however the run ended: a cancelled activity, or one
      // whose worker died before it could stop the pipeline (a heartbeat timeout).
      if (this.pruneRequested) return 'pruned';
      if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.type === WORKER_SHUTDOWN_FAILURE) {
        this.attemptsBefore += Math.max(this.attempt, 1);
        this.attempt = 0;
        return 'handedBack';
      }
      if (error instanceof ActivityFailure && !isCancellation(error)) {
        const cause = error.cause?.message ?? error.message;
        // A non-retryable error (a command that cannot start) ends the run at the attempt that raised it.
        // NOTE: that attempt is counted as 1 unless an epoch signal reported a later one.
        const retried = error.retryState !== RetryState.NON_RETRYABLE_FAILURE;
        this.attempt = Math.max(this.attempt, retried ? spec.execution.maxAttempts : 1);
        log.error('Training failed on the infrastructure side', this.ids({ error: cause, retryState: error.retryState }));
        const attempts = retried ? `after ${spec.execution.maxAttempts} attempts at most` : 'not retried';
        return { infrastructureFailure: `infrastructure: ${cause} (${attempts})` };
      }
      throw error;
    } finally {
      trainingEnded = true;
      await reporting;
    }
  }

  /** Reports pending epochs as they arrive, and cancels the training scope when the pruner decides to prune. */
  private async reportWhileTraining(training: CancellationScope, ended: () => boolean): Promise<void> {
    for (;;) {
      await condition(() => this.pending.length > 0 || ended());
      if (this.pending.length === 0 || this.pruneRequested) return;

      this.status = 'reporting';
      const steps = this.pending.splice(0, this.pending.length);
      const answer = await optuna.reportIntermediateValues({ study: this.input.study, number: this.input.number, steps });
      this.status = 'running';
      if (answer.shouldPrune && !ended()) {
        this.pruneRequested = true;
        log.info('Pruner stopped the trial', this.ids({ epoch: this.maxStepSeen, value: this.lastValue }));
        training.cancel();
        return;
      }
    }
  }

  /** Reports every epoch of a finished run that no signal delivered, before the tell. */
  private async flushReports(result: TrainingResult): Promise<void> {
    for (const epoch of result.epochs) this.acceptEpoch(epoch.epoch, epoch.value);
    if (this.pending.length === 0) return;

    const steps = this.pending.splice(0, this.pending.length);
    const answer = await optuna.reportIntermediateValues({ study: this.input.study, number: this.input.number, steps });
    // A run that already ended is only pruned when it did not complete: a finished trial keeps its value.
    if (answer.shouldPrune && result.end !== 'completed') this.pruneRequested = true;
  }

  private makeOutcome(state: TrialState, value: ReportedValue, reason: string | null): TrialOutcome {
    return {
      number: this.input.number,
      state,
      value: state === 'FAIL' ? null : value,
      reason,
      runId: this.input.runId,
      attempts: Math.max(this.attemptsBefore + this.attempt, this.run),
      lastEpoch: this.maxStepSeen,
    };
  }

  /** Tells Optuna, then the study workflow; both are idempotent, so a replayed finish is harmless. */
  private async finish(outcome: TrialOutcome): Promise<void> {
    this.status = 'finished';
    const told = await optuna.tellTrial({
      study: this.input.study,
      number: outcome.number,
      state: outcome.state,
      value: outcome.value,
      userAttrs: { 'hpo:run_id': outcome.runId, 'hpo:attempts': outcome.attempts, 'hpo:reason': outcome.reason },
    });
    // Optuna may store another state than asked (a NaN value becomes FAIL); the storage is the truth.
    if (told.state !== outcome.state) {
      outcome = { ...outcome, state: told.state as TrialState, reason: outcome.reason ?? `Optuna stored ${told.state}` };
    }
    outcome = { ...outcome, value: told.value };
    this.outcome = outcome;
    this.updateDetails();
    logOutcome(outcome, this.input);

    try {
      await getExternalWorkflowHandle(this.input.studyWorkflowId).signal(trialFinishedSignal, outcome);
    } catch (error) {
      log.warn('Study workflow not reachable; the trial result stays in Optuna', this.ids({ error: (error as Error).message }));
    }
  }

  private ids(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { study: this.input.study.studyName, trial: this.input.number, run: this.run, attempt: this.attempt, ...extra };
  }
}

/** Returns the reason of an out-of-memory end with one prefix: a quoted CUDA message already has it. */
function outOfMemoryReason(reason: string | null): string {
  if (reason === null) return 'out of memory';
  return reason.startsWith('out of memory') ? reason : `out of memory: ${reason}`;
}

/** Logs one stable line per trial state change, worded as Optuna words its own. */
function logOutcome(outcome: TrialOutcome, input: TrialWorkflowInput): void {
  const meta = { study: input.study.studyName, trial: outcome.number, state: outcome.state, value: outcome.value, attempts: outcome.attempts };
  if (outcome.state === 'COMPLETE') {
    log.info(`Trial ${outcome.number} finished with value ${outcome.value} and parameters ${JSON.stringify(input.params)}.`, meta);
  } else if (outcome.state === 'PRUNED') {
    log.info(`Trial ${outcome.number} pruned. ${outcome.reason ?? ''}`.trim(), meta);
  } else {
    log.warn(`Trial ${outcome.number} failed because of: ${outcome.reason}`, meta);
  }
}

export async function trialWorkflow(input: TrialWorkflowInput): Promise<TrialOutcome> {
  const trial = new TrialRun(input);
  setHandler(epochReportedSignal, (report) => trial.onEpoch(report));
  setHandler(trialProgressQuery, () => trial.progress());
  trial.updateDetails();
  return await trial.execute();
}
