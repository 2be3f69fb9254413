/**
 * The trainer-side modules against a real process: the fake pipeline in test/fake-pipeline,
 * started through PipelineProcess, its CSV tailed while it runs, its end classified.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';

import { classifyExit } from '../../src/activities/failureKinds';
import { PipelineProcess, readLogTail } from '../../src/activities/pipelineProcess';
import { bestValue, ObjectiveColumnMissingError, readTrainingLog, TrainingLogTail, type EpochRow } from '../../src/activities/trainingLog';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const FAKE_PIPELINE_ROOT = path.join(REPO_ROOT, 'test', 'fake-pipeline');
const VENV_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const PYTHON = fs.existsSync(VENV_PYTHON) ? VENV_PYTHON : 'python3';

let tmpRoot: string;
before(() => {
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-pipeline-'));
});
after(() => {
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

interface FakeRun {
  proc: PipelineProcess;
  /** Pipeline root of this run: the fake pipeline writes logs/ and models/ under it. */
  root: string;
  csvPath: string;
  logPath: string;
  tail: TrainingLogTail;
}

let runCount = 0;

/** Writes a config and starts the fake pipeline from a fresh root, with the package on PYTHONPATH. */
async function startFake(options: { runId?: string; epochs?: number; fake?: Record<string, unknown>; config?: Record<string, unknown> } = {}): Promise<FakeRun> {
  runCount += 1;
  const root = path.join(tmpRoot, `root${runCount}`);
  fs.mkdirSync(root, { recursive: true });
  const runId = options.runId ?? 'trial_t0000';
  const config = {
    run_config: { mode: 'train_only', train_run_id: runId },
    model_config: { model: 'v5', quality: 0.8 },
    training_config: { epochs: options.epochs ?? 4, logging: { validation_metrics: ['auprc', 'auroc'] } },
    fake_pipeline: { epoch_seconds: 0.03, ...options.fake },
    ...options.config,
  };
  const configPath = path.join(root, 'trial.yaml');
  fs.writeFileSync(configPath, stringify(config));

  const logPath = path.join(root, 'attempt.log');
  const proc = await PipelineProcess.start(
    {
      argv: [PYTHON, '-m', 'src.run', '--config', configPath],
      cwd: root,
      env: { ...process.env, PYTHONPATH: FAKE_PIPELINE_ROOT, PYTHONDONTWRITEBYTECODE: '1' },
      logPath,
    },
    { outputPollMs: 50 },
  );
  const csvPath = path.join(root, 'logs', 'v5', 'train', runId, 'training_step.csv');
  return { proc, root, csvPath, logPath, tail: new TrainingLogTail(csvPath, 'Val auprc') };
}

/** Polls the tail until `count` rows arrived or the process exited; returns the rows seen so far. */
async function waitForRows(run: FakeRun, count: number, timeoutMs = 10_000): Promise<EpochRow[]> {
  let exited = false;
  void run.proc.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + timeoutMs;
  while (run.tail.rows().length < count && !exited) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} rows in ${run.csvPath}`);
    await run.tail.poll();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return run.tail.rows();
}

function isDead(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

const epochsOf = (rows: EpochRow[]) => rows.map((r) => r.epoch);
const valuesOf = (rows: EpochRow[]) => rows.map((r) => r.value);

describe('fake pipeline', () => {
  test('completed run', async () => {
    const run = await startFake({ epochs: 4 });
    const seenWhileRunning = await waitForRows(run, 1);

    const exit = await run.proc.exited;
    await run.tail.poll({ final: true });

    assert.ok(seenWhileRunning.length >= 1);
    assert.deepEqual(exit, { code: 0, signal: null, stoppedByUs: false });
    assert.equal(classifyExit(exit, await readLogTail(run.logPath, 50)).end, 'completed');
    // Value of epoch k is quality * k / epochs, with quality 0.8.
    assert.deepEqual(valuesOf(run.tail.rows()), [1, 2, 3, 4].map((k) => (0.8 * k) / 4));
    assert.equal(bestValue(run.tail.rows(), 'maximize'), 0.8);
    assert.deepEqual(Object.keys(run.tail.rows()[0].metrics), ['Epoch Time', 'Train Loss', 'Val Loss', 'Val auprc', 'Val auroc', 'Learning Rate']);
    assert.ok(fs.existsSync(path.join(run.root, 'models', 'v5', 'train', 'trial_t0000', 'best_model.pth')));
    assert.match(fs.readFileSync(path.join(run.root, 'logs', 'v5', 'train', 'trial_t0000', 'log.log'), 'utf8'), /Epoch 4 \| Step 1200\/1200/);
    assert.match(fs.readFileSync(run.logPath, 'utf8'), /Epoch 1 \| Step 400\/1200 \| Loss/);
  });

  test('stop mid-run kills the group', async () => {
    const run = await startFake({ epochs: 200, fake: { epoch_seconds: 0.05, spawn_child: true } });
    await waitForRows(run, 3);
    const childPid = Number(/spawned child pid (\d+)/.exec(fs.readFileSync(run.logPath, 'utf8'))?.[1]);
    assert.ok(childPid > 0);

    const exit = await run.proc.stop(3000);
    await run.tail.poll({ final: true });

    assert.deepEqual(exit, { code: null, signal: 'SIGTERM', stoppedByUs: true });
    assert.equal(classifyExit(exit, await readLogTail(run.logPath, 50)).end, 'stopped');
    assert.ok(isDead(run.proc.pid), `pipeline ${run.proc.pid} still alive`);
    assert.ok(isDead(childPid), `child ${childPid} still alive`);
    // The tail saw exactly the epochs in the file: every one, each once, in order.
    const written = await readTrainingLog(run.csvPath, 'Val auprc');
    assert.ok(written.length >= 3);
    assert.ok(written.length < 200);
    assert.deepEqual(epochsOf(run.tail.rows()), epochsOf(written));
    assert.deepEqual(epochsOf(written), Array.from({ length: written.length }, (_, index) => index + 1));
  });

  test('oom from real stderr', async () => {
    const run = await startFake({ epochs: 4, fake: { oom_at_epoch: 2 } });

    const exit = await run.proc.exited;
    const classified = classifyExit(exit, await readLogTail(run.logPath, 50));

    assert.deepEqual(exit, { code: 1, signal: null, stoppedByUs: false });
    assert.equal(classified.end, 'out_of_memory');
    assert.match(classified.reason, /^out of memory: torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate 2\.00 GiB/);
    // The failing epoch writes no row.
    assert.deepEqual(epochsOf(await readTrainingLog(run.csvPath, 'Val auprc')), [1]);
  });

  test('crash with exit code', async () => {
    const run = await startFake({ epochs: 4, fake: { crash_at_epoch: 3, exit_code: 7 } });

    const exit = await run.proc.exited;
    const classified = classifyExit(exit, await readLogTail(run.logPath, 50));

    assert.equal(exit.code, 7);
    assert.equal(classified.end, 'failed');
    assert.match(classified.reason, /^pipeline exited with code 7; last lines of the log:\n/);
    assert.match(classified.reason, /RuntimeError: fake pipeline crashed at epoch 3/);
    assert.deepEqual(epochsOf(await readTrainingLog(run.csvPath, 'Val auprc')), [1, 2]);
  });

  test('sigkill self looks like oom killer', async () => {
    const run = await startFake({ epochs: 4, fake: { sigkill_self_at_epoch: 2 } });

    const exit = await run.proc.exited;
    const classified = classifyExit(exit, await readLogTail(run.logPath, 50));

    assert.deepEqual(exit, { code: null, signal: 'SIGKILL', stoppedByUs: false });
    assert.equal(classified.end, 'out_of_memory');
    assert.match(classified.reason, /kernel's out-of-memory killer/);
  });

  test('ignored SIGTERM escalates to SIGKILL', async () => {
    const run = await startFake({ epochs: 200, fake: { epoch_seconds: 0.05, ignore_sigterm: true } });
    await waitForRows(run, 1);

    const started = Date.now();
    const exit = await run.proc.stop(600);
    const elapsed = Date.now() - started;

    assert.deepEqual(exit, { code: null, signal: 'SIGKILL', stoppedByUs: true });
    assert.ok(elapsed >= 600, `stopped after ${elapsed} ms`);
    assert.match(fs.readFileSync(run.logPath, 'utf8'), /SIGTERM received and ignored/);
  });

  test('hang stops log output', async () => {
    const run = await startFake({ epochs: 5, fake: { hang_at_epoch: 2 } });
    try {
      await waitForRows(run, 1);
      await new Promise((resolve) => setTimeout(resolve, 700));

      // Nothing is written once the pipeline hangs, so lastOutputAt falls behind.
      assert.ok(Date.now() - run.proc.lastOutputAt() >= 500, `last output ${Date.now() - run.proc.lastOutputAt()} ms ago`);
      assert.deepEqual(epochsOf(await run.tail.poll()), []);
    } finally {
      await run.proc.stop(2000);
    }
  });

  test('script file picks behaviour by run id', async () => {
    const scriptFile = path.join(tmpRoot, 'script.json');
    const touchFile = path.join(tmpRoot, 'starts.txt');
    fs.writeFileSync(scriptFile, JSON.stringify({ study_t0001: { values: [0.1, 'nan', 0.3] }, '*': { values: [0.9] } }));
    const fake = { script_file: scriptFile, touch_file_on_start: touchFile };

    const first = await startFake({ runId: 'study_t0001', fake });
    await first.proc.exited;
    const second = await startFake({ runId: 'study_t0002', fake });
    await second.proc.exited;

    assert.deepEqual(valuesOf(await readTrainingLog(first.csvPath, 'Val auprc')), [0.1, Number.NaN, 0.3]);
    assert.deepEqual(valuesOf(await readTrainingLog(second.csvPath, 'Val auprc')), [0.9]);
    assert.deepEqual(fs.readFileSync(touchFile, 'utf8').trim().split('\n'), [`study_t0001 ${first.proc.pid}`, `study_t0002 ${second.proc.pid}`]);
  });

  test('file format variants', async () => {
    const run = await startFake({
      epochs: 3,
      fake: { bom: true, crlf: true, duplicate_epoch: 2, no_newline_at_end: true, values: [0.5, 0.6, 0.7] },
    });
    await run.proc.exited;

    // Without the final flag the unterminated last row is not yet a row.
    assert.deepEqual(epochsOf(await run.tail.poll()), [1, 2]);
    assert.deepEqual(epochsOf(await run.tail.poll({ final: true })), [3]);
    // The duplicate of epoch 2 (value + 0.25) is ignored.
    assert.deepEqual(valuesOf(run.tail.rows()), [0.5, 0.6, 0.7]);
    assert.equal(fs.readFileSync(run.csvPath).subarray(0, 3).toString('hex'), 'efbbbf');
  });

  test('missing objective column', async () => {
    const run = await startFake({ epochs: 2, fake: { missing_objective: true } });
    await run.proc.exited;

    await assert.rejects(run.tail.poll({ final: true }), (error: unknown) => error instanceof ObjectiveColumnMissingError && error.columns.includes('Val auroc'));
  });

  test('late file appears', async () => {
    const run = await startFake({ epochs: 2, fake: { delay_file_seconds: 0.8 } });
    await new Promise((resolve) => setTimeout(resolve, 300));

    assert.equal(run.tail.exists(), false);
    assert.deepEqual(await run.tail.poll(), []);

    await run.proc.exited;
    assert.equal(run.tail.exists(), true);
    assert.deepEqual(epochsOf(await run.tail.poll({ final: true })), [1, 2]);
  });

  test('no file', async () => {
    const run = await startFake({ epochs: 2, fake: { no_file: true } });

    const exit = await run.proc.exited;

    assert.equal(exit.code, 0);
    assert.equal(run.tail.exists(), false);
    assert.deepEqual(await run.tail.poll({ final: true }), []);
  });

  const modes = [
    { mode: 'full_pipeline', trains: true },
    { mode: 'eval_only', trains: false },
  ];
  for (const { mode, trains } of modes) {
    test(`mode ${mode}`, async () => {
      const run = await startFake({
        epochs: 2,
        config: { run_config: { mode, train_run_id: 'best_train', eval_run_id: 'best_eval' } },
      });
      const exit = await run.proc.exited;

      assert.equal(exit.code, 0);
      const metrics = JSON.parse(fs.readFileSync(path.join(run.root, 'logs', 'v5', 'eval', 'best_eval', 'metrics.json'), 'utf8'));
      assert.equal(metrics.auprc, 0.8);
      assert.equal(fs.existsSync(path.join(run.root, 'logs', 'v5', 'train', 'best_train', 'training_step.csv')), trains);
    });
  }
});
