/**
 * `hpo status <study> [--json]`: the study's trials, from the running workflow's queries or, once
 * the study has finished, from its result.
 */
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { studyWorkflowId } from '../workflows/ids';
import type { TrialProgress, TrialSummary } from '../workflows/messages';
import type { StudyResult } from '../workflows/study';
import { resolveTemporal } from './connection';
import { fetchProgress, formatParams, formatValue } from './progress';
import { UsageError } from './start';

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

export async function collectStatus(client: Client, study: string): Promise<StatusReport> {
  const handle = client.workflow.getHandle(studyWorkflowId(study));
  const description = await handle.describe();
  const status = description.status.name;

  if (status === 'RUNNING') {
    const { study: progress, trials } = await fetchProgress(client, handle);
    return {
      study: progress.studyName,
      workflow_id: handle.workflowId,
      workflow_status: status,
      phase: progress.phase,
      n_trials: progress.nTrials,
      finished: progress.counted,
      best: progress.best ? toStatusTrial(progress.best) : null,
      trials: progress.trials.map((t) => toStatusTrial(t, trials.get(t.number))).sort((a, b) => a.number - b.number),
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
    };
  }
  return { study, workflow_id: handle.workflowId, workflow_status: status, phase: null, n_trials: null, finished: null, best: null, trials: [] };
}

export async function statusCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
  const study = positionals[0];
  if (!study) throw new UsageError('status needs a study name: npx hpo status <study> [--json]');

  const target = await resolveTemporal({ projectDir: process.cwd(), startEmbedded: false });
  const connection = await Connection.connect(target.connectionOptions);
  let report: StatusReport;
  try {
    report = await collectStatus(new Client({ connection, namespace: target.namespace }), study);
  } catch (error) {
    if ((error as Error).name === 'WorkflowNotFoundError') {
      throw new UsageError(`no study ${study} on ${target.connectionOptions.address} (namespace ${target.namespace}); check the name, or TEMPORAL_ADDRESS`);
    }
    throw error;
  } finally {
    await connection.close();
  }

  if (values.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return 0;
  }
  const out = (line: string) => process.stdout.write(line + '\n');
  out(`Study ${report.study}: workflow ${report.workflow_status}, phase ${report.phase ?? '-'}, ${report.finished ?? '-'}/${report.n_trials ?? '-'} trials finished`);
  if (report.best) out(`Best: trial ${report.best.number}, value ${formatValue(report.best.value)}`);
  for (const t of report.trials) {
    const epoch = t.epoch !== null ? ` epoch ${t.epoch}` : '';
    const reason = t.reason ? ` (${t.reason})` : '';
    out(`  ${String(t.number).padStart(4)} ${t.state.padEnd(8)} ${formatValue(t.value).padStart(8)}${epoch} attempts ${t.attempts} ${t.run_id ?? ''} ${formatParams(t.params)}${reason}`);
  }
  return 0;
}
