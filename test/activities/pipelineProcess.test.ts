import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PipelineProcess, readLogTail, type PipelineLaunch } from '../../src/activities/pipelineProcess';

let tmpRoot: string;
before(() => {
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'pipeline-process-'));
});
after(() => {
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

let runCount = 0;
function launch(argv: string[], overrides: Partial<PipelineLaunch> = {}): PipelineLaunch {
  runCount += 1;
  return { argv, cwd: tmpRoot, env: process.env, logPath: path.join(tmpRoot, `run${runCount}`, 'logs', 'pipeline.log'), ...overrides };
}

/** Returns whether the process is gone: not listed in /proc, or a zombie waiting to be reaped. */
function isDead(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function readLog(logPath: string): string {
  return fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '';
}

/** Waits until the log contains `count` lines of pids, as written by `echo $!`. */
async function waitForPids(logPath: string, count: number): Promise<number[]> {
  const pids = () => readLog(logPath).split('\n').filter((line) => /^\d+$/.test(line)).map(Number);
  await waitFor(() => pids().length >= count, 5000, `${count} pids in ${logPath}`);
  return pids();
}

describe('PipelineProcess', () => {
  test('stdout and stderr appended', async () => {
    const settings = launch(['bash', '-c', 'echo to-stdout; echo to-stderr >&2; exit 3']);

    const first = await PipelineProcess.start(settings);
    assert.deepEqual(await first.exited, { code: 3, signal: null, stoppedByUs: false });
    const second = await PipelineProcess.start(settings);
    await second.exited;

    const log = readLog(settings.logPath);
    assert.equal(log.match(/to-stdout/g)?.length, 2);
    assert.equal(log.match(/to-stderr/g)?.length, 2);
  });

  test('arguments bypass the shell', async () => {
    const settings = launch(['echo', '$HOME', '*', ';', 'true']);

    const proc = await PipelineProcess.start(settings);
    await proc.exited;

    assert.equal(readLog(settings.logPath), '$HOME * ; true\n');
  });

  test('env and cwd reach the child', async () => {
    const workdir = fs.mkdtempSync(path.join(tmpRoot, 'workdir-'));
    const settings = launch(['bash', '-c', 'echo "$FAKE_SETTING $PWD"'], { cwd: workdir, env: { ...process.env, FAKE_SETTING: 'on' } });

    const proc = await PipelineProcess.start(settings);
    await proc.exited;

    assert.equal(readLog(settings.logPath), `on ${workdir}\n`);
  });

  test('leads its own process group', async () => {
    const settings = launch(['bash', '-c', 'ps -o pgid= -p $$']);

    const proc = await PipelineProcess.start(settings);
    await proc.exited;

    assert.equal(Number(readLog(settings.logPath).trim()), proc.pid);
  });

  test('executable not found', async () => {
    const settings = launch(['no-such-pipeline-command', '--config', 'x.yaml'], { env: { PATH: '/nonexistent/bin' } });

    const error = await PipelineProcess.start(settings).catch((caught: unknown) => caught as Error);
    assert.ok(error instanceof Error);
    assert.match(error.message, /"no-such-pipeline-command" not found/);
    assert.match(error.message, /PATH=\/nonexistent\/bin/);
    assert.ok(error.message.includes(`cwd ${tmpRoot}`));
  });

  test('relative executable not found', async () => {
    const settings = launch(['./bin/train.sh']);

    await assert.rejects(PipelineProcess.start(settings), (error: Error) => error.message.includes(path.join(tmpRoot, 'bin', 'train.sh')));
  });

  test('working directory missing', async () => {
    const settings = launch(['true'], { cwd: path.join(tmpRoot, 'absent') });

    await assert.rejects(PipelineProcess.start(settings), /working directory not found: .*absent/);
  });

  test('empty argv rejected', async () => {
    await assert.rejects(PipelineProcess.start(launch([])), /command is empty/);
  });

  test('stop kills grandchildren', async () => {
    const settings = launch(['bash', '-c', 'sleep 100 & echo $!; sleep 100 & echo $!; wait']);
    const proc = await PipelineProcess.start(settings);
    const sleepers = await waitForPids(settings.logPath, 2);

    const exit = await proc.stop(5000);

    assert.deepEqual(exit, { code: null, signal: 'SIGTERM', stoppedByUs: true });
    for (const pid of [proc.pid, ...sleepers]) {
      assert.ok(isDead(pid), `process ${pid} still alive`);
    }
  });

  test('stop is idempotent', async () => {
    const proc = await PipelineProcess.start(launch(['sleep', '100']));

    const first = proc.stop(5000);
    const second = proc.stop(10);

    assert.equal(first, second);
    assert.deepEqual(await first, { code: null, signal: 'SIGTERM', stoppedByUs: true });
    assert.deepEqual(await proc.stop(5000), await first);
  });

  test('stop escalates to SIGKILL', async () => {
    // bash's `trap '' TERM` makes bash and its sleep ignore SIGTERM.
    const settings = launch(['bash', '-c', "trap '' TERM; echo ready; sleep 100; echo after"]);
    const proc = await PipelineProcess.start(settings);
    await waitFor(() => readLog(settings.logPath).includes('ready'), 5000, 'ready');

    const started = Date.now();
    const exit = await proc.stop(400);
    const elapsed = Date.now() - started;

    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(exit.stoppedByUs, true);
    // SIGKILL follows only after the grace period.
    assert.ok(elapsed >= 400, `stopped after ${elapsed} ms`);
    assert.ok(elapsed < 3000, `stopped after ${elapsed} ms`);
  });

  test('stop after exit keeps the exit', async () => {
    const proc = await PipelineProcess.start(launch(['bash', '-c', 'exit 0']));
    await proc.exited;

    assert.deepEqual(await proc.stop(1000), { code: 0, signal: null, stoppedByUs: false });
  });

  test('stop after exit kills leftovers', async () => {
    // bash exits at once and leaves its background sleep in the process group.
    const settings = launch(['bash', '-c', 'sleep 100 & echo $!']);
    const proc = await PipelineProcess.start(settings);
    const [orphan] = await waitForPids(settings.logPath, 1);
    await proc.exited;
    assert.equal(isDead(orphan), false);

    const exit = await proc.stop(5000);

    assert.deepEqual(exit, { code: 0, signal: null, stoppedByUs: false });
    await waitFor(() => isDead(orphan), 2000, `orphan ${orphan} to die`);
  });

  test('lastOutputAt follows log growth', async () => {
    const settings = launch(['bash', '-c', 'echo early; sleep 0.6; echo late; sleep 100']);
    const before = Date.now();
    const proc = await PipelineProcess.start(settings, { outputPollMs: 50 });
    try {
      await waitFor(() => readLog(settings.logPath).includes('early'), 5000, 'early');
      await new Promise((resolve) => setTimeout(resolve, 150));
      const afterEarly = proc.lastOutputAt();
      assert.ok(afterEarly >= before);

      await waitFor(() => readLog(settings.logPath).includes('late'), 5000, 'late');
      await new Promise((resolve) => setTimeout(resolve, 150));
      // The second write comes about 600 ms after the first.
      assert.ok(proc.lastOutputAt() - afterEarly >= 400, `moved by ${proc.lastOutputAt() - afterEarly} ms`);
    } finally {
      await proc.stop(1000);
    }
  });

  test('pipeline outlives its parent', async () => {
    // A separate Node process starts the pipeline and is then killed with SIGKILL.
    const logPath = path.join(tmpRoot, 'orphaned', 'pipeline.log');
    const script = [
      "const { PipelineProcess } = require('./src/activities/pipelineProcess');",
      `PipelineProcess.start({ argv: ['bash', '-c', 'for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done'], cwd: process.cwd(), env: process.env, logPath: ${JSON.stringify(logPath)} })`,
      '  .then((proc) => { console.log(proc.pid); setInterval(() => {}, 1000); });',
    ].join('\n');
    const parent = spawn(process.execPath, ['--import', 'tsx', '-e', script], { cwd: path.resolve(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
    const pipelinePid = await new Promise<number>((resolve, reject) => {
      parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      parent.once('exit', (code) => reject(new Error(`parent exited with ${code} before starting the pipeline`)));
    });

    parent.kill('SIGKILL');
    try {
      await waitFor(() => readLog(logPath).includes('tick 5'), 5000, 'tick 5 after the parent died');
      assert.ok(readLog(logPath).includes('tick 1'));
    } finally {
      try {
        process.kill(-pipelinePid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});

describe('readLogTail', () => {
  function logFile(text: string | Buffer): string {
    runCount += 1;
    const logPath = path.join(tmpRoot, `tail${runCount}.log`);
    fs.writeFileSync(logPath, text);
    return logPath;
  }

  test('missing file', async () => {
    assert.equal(await readLogTail(path.join(tmpRoot, 'absent.log'), 10), '');
  });

  const cases: Array<{ name: string; text: string; lines: number; maxBytes?: number; expected: string }> = [
    { name: 'fewer lines than asked', text: 'a\nb\n', lines: 10, expected: 'a\nb' },
    { name: 'last lines only', text: 'a\nb\nc\nd\n', lines: 2, expected: 'c\nd' },
    { name: 'no final newline', text: 'a\nb\nc', lines: 2, expected: 'b\nc' },
    { name: 'CRLF', text: 'a\r\nb\r\n', lines: 5, expected: 'a\nb' },
    { name: 'progress bar redraws', text: 'start\n 10%\r 50%\r100%\ndone\n', lines: 5, expected: 'start\n100%\ndone' },
    { name: 'zero lines', text: 'a\n', lines: 0, expected: '' },
    { name: 'empty file', text: '', lines: 5, expected: '' },
    { name: 'byte limit drops partial line', text: 'first line\nsecond\nthird\n', lines: 10, maxBytes: 15, expected: 'second\nthird' },
  ];
  for (const { name, text, lines, maxBytes, expected } of cases) {
    test(`tail ${name}`, async () => {
      assert.equal(await readLogTail(logFile(text), lines, maxBytes), expected);
    });
  }

  test('tail of a large log', async () => {
    const lines = Array.from({ length: 50_000 }, (_, index) => `line ${index} é`);
    const logPath = logFile(lines.join('\n') + '\n');

    assert.equal(await readLogTail(logPath, 3, 4096), lines.slice(-3).join('\n'));
  });
});
