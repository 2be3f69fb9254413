import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { classifyExit, findOutOfMemoryLine, isOutOfMemoryText } from '../../src/activities/failureKinds';
import { readLogTail, type PipelineExit } from '../../src/activities/pipelineProcess';

const LOG_FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'logs');

const TORCH_OOM =
  'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.31 GiB is free.';

describe('isOutOfMemoryText', () => {
  const outOfMemory = [
    TORCH_OOM,
    'torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB',
    'RuntimeError: CUDA out of memory. Tried to allocate 512.00 MiB',
    'RuntimeError: CUDA error: out of memory',
    'RuntimeError: HIP out of memory. Tried to allocate 1.00 GiB',
    'torch.OutOfMemoryError: HIP out of memory.',
    'RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`',
    'RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED',
    'cuda out of memory',
    'OUTOFMEMORYERROR',
    'Epoch 3 | Step 400/4064\nTraceback (most recent call last):\n  File "x.py", line 1\n' + TORCH_OOM + '\n',
  ];
  for (const text of outOfMemory) {
    test(`oom ${JSON.stringify(text.slice(0, 48))}`, () => {
      assert.equal(isOutOfMemoryText(text), true);
    });
  }

  const notOutOfMemory = [
    '',
    'checking out of memory budget',
    'warning: out of memory budget for the embedding cache',
    'CUDA available, out of 4 GPUs using 1',
    'CUDA_VISIBLE_DEVICES=0 out of memory budget',
    'RuntimeError: expected all tensors to be on the same device',
    'Epoch 1 | Step 400/4064 | Loss 0.7711 | LR 2.4138e-06',
    'ValueError: memory format not supported',
  ];
  for (const text of notOutOfMemory) {
    test(`not oom ${JSON.stringify(text.slice(0, 48))}`, () => {
      assert.equal(isOutOfMemoryText(text), false);
    });
  }

  test('last matching line wins', () => {
    const text = 'RuntimeError: CUDA error: out of memory\nretrying\n' + TORCH_OOM + '\nexiting';

    assert.equal(findOutOfMemoryLine(text), TORCH_OOM);
  });
});

describe('classifyExit', () => {
  const exit = (code: number | null, signal: NodeJS.Signals | null, stoppedByUs = false): PipelineExit => ({ code, signal, stoppedByUs });
  const kernelKiller = "killed by SIGKILL, not by the orchestrator: most likely the kernel's out-of-memory killer";

  const cases: Array<{ name: string; exit: PipelineExit; log: string; end: string; reason: string | RegExp }> = [
    { name: 'exit 0', exit: exit(0, null), log: 'Done', end: 'completed', reason: 'pipeline exited with code 0' },
    { name: 'exit 0 wins over oom text', exit: exit(0, null), log: TORCH_OOM, end: 'completed', reason: /code 0/ },
    { name: 'exit 0 wins over stop', exit: exit(0, null, true), log: '', end: 'completed', reason: /code 0/ },
    { name: 'stopped by SIGTERM', exit: exit(null, 'SIGTERM', true), log: '', end: 'stopped', reason: 'stopped by the orchestrator (killed by signal SIGTERM)' },
    { name: 'stopped by SIGKILL', exit: exit(null, 'SIGKILL', true), log: TORCH_OOM, end: 'stopped', reason: /SIGKILL/ },
    { name: 'stopped with a code', exit: exit(143, null, true), log: '', end: 'stopped', reason: /code 143/ },
    { name: 'oom text', exit: exit(1, null), log: `Traceback\n${TORCH_OOM}\n`, end: 'out_of_memory', reason: `out of memory: ${TORCH_OOM}` },
    { name: 'oom text and SIGKILL', exit: exit(null, 'SIGKILL'), log: TORCH_OOM, end: 'out_of_memory', reason: `out of memory: ${TORCH_OOM}` },
    { name: 'SIGKILL from elsewhere', exit: exit(null, 'SIGKILL'), log: 'Epoch 2', end: 'out_of_memory', reason: kernelKiller },
    {
      name: 'torchrun worker SIGKILL',
      exit: exit(1, null),
      log: 'exitcode  : -9 (pid: 4242)\ntraceback : Signal 9 (SIGKILL) received by PID 4242',
      end: 'out_of_memory',
      reason: /torchrun worker was killed by SIGKILL/,
    },
    { name: 'exit code', exit: exit(2, null), log: 'ValueError: bad config', end: 'failed', reason: 'pipeline exited with code 2; last lines of the log:\nValueError: bad config' },
    { name: 'other signal', exit: exit(null, 'SIGSEGV'), log: 'x', end: 'failed', reason: /^killed by signal SIGSEGV; / },
    { name: 'empty log', exit: exit(1, null), log: '', end: 'failed', reason: 'pipeline exited with code 1; no log output' },
  ];
  for (const { name, exit: pipelineExit, log, end, reason } of cases) {
    test(`classify ${name}`, () => {
      const classified = classifyExit(pipelineExit, log);

      assert.equal(classified.end, end);
      if (typeof reason === 'string') assert.equal(classified.reason, reason);
      else assert.match(classified.reason, reason);
    });
  }

  test('failed reason keeps last 20 lines', () => {
    const log = Array.from({ length: 30 }, (_, index) => `line ${index + 1}`).join('\n');

    const { reason } = classifyExit(exit(1, null), log);

    assert.ok(reason.endsWith('line 11\nline 12\nline 13\nline 14\nline 15\nline 16\nline 17\nline 18\nline 19\nline 20\nline 21\nline 22\nline 23\nline 24\nline 25\nline 26\nline 27\nline 28\nline 29\nline 30'));
    assert.ok(!reason.includes('line 10\n'));
  });

  test('long oom line truncated', () => {
    const line = `RuntimeError: CUDA out of memory. ${'x'.repeat(2000)}`;

    const { reason } = classifyExit(exit(1, null), line);

    assert.ok(reason.length <= 'out of memory: '.length + 600);
    assert.ok(reason.startsWith('out of memory: RuntimeError: CUDA out of memory.'));
  });

  const fixtures: Array<{ file: string; exit: PipelineExit; end: string; reason: RegExp }> = [
    {
      file: 'cuda_oom_with_progress.log',
      exit: { code: 1, signal: null, stoppedByUs: false },
      end: 'out_of_memory',
      reason: /^out of memory: torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate 3\.50 GiB/,
    },
    {
      file: 'torchrun_worker_sigkill.log',
      exit: { code: 1, signal: null, stoppedByUs: false },
      end: 'out_of_memory',
      reason: /torchrun worker was killed by SIGKILL/,
    },
    {
      file: 'value_error.log',
      exit: { code: 1, signal: null, stoppedByUs: false },
      end: 'failed',
      reason: /^pipeline exited with code 1; last lines of the log:\n[^]*ValueError: unknown optimizer type 'adamw2'$/,
    },
  ];
  for (const { file, exit: pipelineExit, end, reason } of fixtures) {
    test(`classify log ${file}`, async () => {
      const logTail = await readLogTail(path.join(LOG_FIXTURES, file), 50);

      const classified = classifyExit(pipelineExit, logTail);

      assert.equal(classified.end, end);
      assert.match(classified.reason, reason);
    });
  }
});
