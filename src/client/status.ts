/**
 * `hpo status <study> [--json]`: the study's trials, from the running workflow's queries or, once
 * the study has finished, from its result.
 */
import { parseArgs } from 'node:util';
import { defaultPayloadConverter } from '@temporalio/common';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { bridgePython, OptunaBridge } from '../activities/optunaBridge';
import type { StudySpec } from '../common/types';
import { studyWorkflowId } from '../workflows/ids';
import type { TrialProgress, TrialSummary } from '../workflows/messages';
import type { StudyResult, StudyWorkflowInput } from '../workflows/study';
import { withClient } from './connection';
import { fetchProgress, formatParams, formatValue, withTimeout } from './progress';
import { UsageError } from './errors';

export interface StatusTrial {
  number: number;
  state: TrialSummary['state'];
  value: TrialSummary['value'];
  params: Record<string, unknown>;
  run_id: string | null;
  attempts: number;
  reason: string | null;
  epoch: number | null;
}

export interface StatusReport {
  study: string;
  workflow_id: string;
  workflow_status: string;
  phase: string | null;
  n_trials: number | null;
  finished: number | null;
  best: StatusTrial | null;
  trials: StatusTrial[];
  /** Source of the trials: the study workflow, or the Optuna storage when no worker responded. */
  source: 'workflow' | 'optuna-storage';
}

function toStatusTrial(trial: TrialSummary, live?: TrialProgress): StatusTrial {
  return {
    number: trial.number,
    state: trial.state,
    value: trial.state === 'RUNNING' && live ? live.lastValue : trial.value,
    params: trial.params,
    run_id: trial.runId,
    attempts: trial.state === 'RUNNING' && live ? Math.max(live.attempt, 1) : trial.attempts,
    reason: trial.reason,
    epoch: live ? live.lastEpoch : null,
  };
}

/** Reads the study spec from the input of the workflow's current run. */
async function specFromHistory(handle: WorkflowHandle): Promise<StudySpec> {
  const history = await handle.fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) throw new Error(`workflow ${handle.workflowId} has no start input to read the study from`);
  return (defaultPayloadConverter.fromPayload(payload) as StudyWorkflowInput).spec;
}

/** Reads the trials straight from the Optuna storage, for a study whose workers are not running. */
async function statusFromStorage(handle: WorkflowHandle, workflowStatus: string): Promise<StatusReport> {
  const spec = await specFromHistory(handle);
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const bridge = new OptunaBridge(bridgePython(), quiet);
  try {
    const raw = (await bridge.call('summary', {
      study: { storage: spec.storage, study_name: spec.studyName, direction: spec.direction, sampler: spec.sampler, pruner: spec.pruner },
    })) as { study_name: string; counted: number; trials: RawTrial[]; best: RawTrial | null };
    return {
      study: raw.study_name,
      workflow_id: handle.workflowId,
      workflow_status: workflowStatus,
      phase: null,
      n_trials: spec.nTrials,
      finished: raw.counted,
      best: raw.best ? fromRaw(raw.best) : null,
      trials: raw.trials.map(fromRaw),
      source: 'optuna-storage',
    };
  } finally {
    await bridge.close();
  }
}

/** A trial as the bridge's `summary` returns it: the status fields without the live epoch. */
type RawTrial = Omit<StatusTrial, 'epoch'>;

function fromRaw(raw: RawTrial): StatusTrial {
  return { number: raw.number, state: raw.state, value: raw.value, params: raw.params, run_id: raw.run_id, attempts: raw.attempts, reason: raw.reason, epoch: null };
}

export async function collectStatus(client: Client, study: string, queryTimeoutMs = 10_000): Promise<StatusReport> {
  const handle = client.workflow.getHandle(studyWorkflowId(study));
  const description = await handle.describe();
  const status = description.status.name;

  if (status === 'RUNNING') {
    // A query needs a study worker. Without one, the Optuna storage still contains every trial.
    const live = await withTimeout(fetchProgress(client, handle), queryTimeoutMs);
    if (live === null) return await statusFromStorage(handle, status);
    const { study: progress, trials } = live;
    return {
      study: progress.studyName,
      workflow_id: handle.workflowId,
      workflow_status: status,
      phase: progress.phase,
      n_trials: progress.nTrials,
      finished: progress.counted,
      best: progress.best ? toStatusTrial(progress.best) : null,
      trials: progress.trials.map((t) => toStatusTrial(t, trials.get(t.number))).sort((a, b) => a.number - b.number),
      source: 'workflow',
    };
  }
  if (status === 'COMPLETED') {
    const result = (await handle.result()) as StudyResult;
    return {
      study: result.studyName,
      workflow_id: handle.workflowId,
      workflow_status: status,
      phase: 'finished',
      n_trials: result.nTrials,
      finished: result.counted,
      best: result.best ? toStatusTrial(result.best) : null,
      trials: result.trials.map((t) => toStatusTrial(t)).sort((a, b) => a.number - b.number),
      source: 'workflow',
    };
  }
  return await statusFromStorage(handle, status);
}

export async function statusCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
  const study = positionals[0];
  if (!study) throw new UsageError('status needs a study name: npx hpo status <study> [--json]');

  const report = await withClient(async (client, target) => {
    try {
      return await collectStatus(client, study);
    } catch (error) {
      if ((error as Error).name === 'WorkflowNotFoundError') {
        throw new UsageError(`no study ${study} on ${target.connectionOptions.address} (namespace ${target.namespace}); check the name, or TEMPORAL_ADDRESS`);
      }
      throw error;
    }
  });

  if (values.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return 0;
  }
  const out = (line: string) => process.stdout.write(line + '\n');
  out(`Study ${report.study}: workflow ${report.workflow_status}, phase ${report.phase ?? '-'}, ${report.finished ?? '-'}/${report.n_trials ?? '-'} trials finished`);
  if (report.source === 'optuna-storage') out('(no study worker answered; trials read from the Optuna storage)');
  if (report.best) out(`Best: trial ${report.best.number}, value ${formatValue(report.best.value)}`);
  for (const t of report.trials) {
    const epoch = t.epoch !== null ? ` epoch ${t.epoch}` : '';
    const reason = t.reason ? ` (${t.reason})` : '';
    out(`  ${String(t.number).padStart(4)} ${t.state.padEnd(8)} ${formatValue(t.value).padStart(8)}${epoch} attempts ${t.attempts} ${t.run_id ?? ''} ${formatParams(t.params)}${reason}`);
  }
  return 0;
}
