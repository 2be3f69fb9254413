/**
 * Terminal progress of a running study: polls the study's and the running trials' queries and
 * prints one line per change (trial started, new epoch, trial finished).
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import {
  studyProgressQuery,
  trialProgressQuery,
  type ReportedValue,
  type StudyProgress,
  type TrialProgress,
  type TrialSummary,
} from '../workflows/messages';
import { trialWorkflowId } from '../workflows/ids';

/** Waits for `promise` at most `ms`; null when it did not settle in time. */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function formatValue(value: ReportedValue | undefined): string {
  if (value === null || value === undefined) return '-';
  return typeof value === 'number' ? value.toFixed(4) : value;
}

export function formatParams(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(([name, value]) => `${name}=${typeof value === 'number' && !Number.isInteger(value) ? value.toPrecision(3) : String(value)}`)
    .join(' ');
}

/** Fetches the study's progress and, for each running trial, its latest epoch. */
export async function fetchProgress(
  client: Client,
  handle: WorkflowHandle,
): Promise<{ study: StudyProgress; trials: Map<number, TrialProgress> }> {
  const study = await handle.query(studyProgressQuery);
  const trials = new Map<number, TrialProgress>();
  await Promise.all(
    study.running.map(async (number) => {
      try {
        trials.set(number, await client.workflow.getHandle(trialWorkflowId(study.studyName, number)).query(trialProgressQuery));
      } catch {
        // A trial that is just starting or ending may not respond to queries yet. The next poll shows it.
      }
    }),
  );
  return { study, trials };
}

export class ProgressPrinter {
  private readonly known = new Map<number, TrialSummary['state']>();
  private readonly epochsPrinted = new Map<number, number>();
  private finishedPrinted = 0;
  private warned = false;

  constructor(
    private readonly write: (line: string) => void,
    private readonly metric: string,
  ) {}

  update(study: StudyProgress, trials: Map<number, TrialProgress>): void {
    if (study.warning && !this.warned) {
      this.warned = true;
      this.write(`warning: ${study.warning}`);
    }

    // Epochs first, so a trial's last epochs come before the line that reports its end.
    for (const [number, trial] of trials) {
      const printed = this.epochsPrinted.get(number) ?? 0;
      for (const { epoch, value } of trial.epochs) {
        if (epoch <= printed) continue;
        const of = study.epochs ? `/${study.epochs}` : '';
        const attempt = trial.attempt > 1 || trial.run > 1 ? ` (run ${trial.run}, attempt ${trial.attempt})` : '';
        this.write(`trial ${number} epoch ${epoch}${of}: ${this.metric} ${formatValue(value)}${attempt}`);
        this.epochsPrinted.set(number, epoch);
      }
    }

    for (const trial of [...study.trials].sort((a, b) => a.number - b.number)) {
      const before = this.known.get(trial.number);
      if (before === trial.state) continue;
      this.known.set(trial.number, trial.state);
      if (trial.state === 'RUNNING') {
        this.write(`trial ${trial.number} started: ${formatParams(trial.params)}`);
        continue;
      }
      this.finishedPrinted += 1;
      const reason = trial.reason ? ` (${trial.reason})` : '';
      const line = `trial ${trial.number} ${trial.state}, ${this.metric} ${formatValue(trial.value)}${reason}`;
      this.write(`${line}   [${this.finishedPrinted} finished of ${study.nTrials}]`);
    }
  }
}
