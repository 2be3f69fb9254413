/** Classification of how a pipeline run ended, from its exit and the last lines of its log. */
import type { PipelineExit } from './pipelineProcess';

export type RunEnd = 'completed' | 'out_of_memory' | 'failed' | 'stopped';

/** Lines of the log quoted in the reason of a failed run. */
const REASON_LOG_LINES = 20;
/** Maximum length, in characters, of the log line quoted in an out-of-memory reason. */
const MAX_QUOTED_LINE = 600;

// The messages that PyTorch, CUDA, HIP, cuBLAS and cuDNN print when device memory runs out, e.g.
// "torch.OutOfMemoryError: CUDA out of memory.", "RuntimeError: CUDA error: out of memory",
// "CUBLAS_STATUS_ALLOC_FAILED". A bare "out of memory" elsewhere in a log is not enough.
const OUT_OF_MEMORY_LINE = [
  /OutOfMemoryError/i,
  /\b(?:cuda|hip|cublas|cudnn)(?: error)?:?\s+out of memory\b/i,
  /\bRuntimeError\b.*\bout of memory\b/i,
  /\b(?:CUBLAS|CUDNN)_STATUS_ALLOC_FAILED\b/i,
];

// torchrun reports a worker killed by SIGKILL with this line, then exits with an error itself.
const TORCHRUN_WORKER_SIGKILL = /Signal 9 \(SIGKILL\) received by PID/;

/** Returns the last log line with a PyTorch/CUDA out-of-memory message, or null. */
export function findOutOfMemoryLine(logTail: string): string | null {
  const lines = logTail.split(/\r?\n/);
  for (let index = lines.length - 1; index >= 0; index -= 1) {
    const line = lines[index].trim();
    if (OUT_OF_MEMORY_LINE.some((pattern) => pattern.test(line))) return line;
  }
  return null;
}

export function isOutOfMemoryText(logTail: string): boolean {
  return findOutOfMemoryLine(logTail) !== null;
}

/**
 * Classifies a finished run. Checked in order: exit code 0 -> completed; stopped by the
 * orchestrator -> stopped; an out-of-memory message in the log -> out_of_memory; killed by SIGKILL
 * from elsewhere -> out_of_memory, since the kernel's OOM killer is the usual sender; else failed.
 */
export function classifyExit(exit: PipelineExit, logTail: string): { end: RunEnd; reason: string } {
  if (exit.code === 0) {
    return { end: 'completed', reason: 'pipeline exited with code 0' };
  }
  if (exit.stoppedByUs) {
    return { end: 'stopped', reason: `stopped by the orchestrator (${describeExit(exit)})` };
  }

  const outOfMemoryLine = findOutOfMemoryLine(logTail);
  if (outOfMemoryLine !== null) {
    return { end: 'out_of_memory', reason: `out of memory: ${truncate(outOfMemoryLine, MAX_QUOTED_LINE)}` };
  }

  if (exit.signal === 'SIGKILL') {
    const reason = "killed by SIGKILL, not by the orchestrator: most likely the kernel's out-of-memory killer";
    return { end: 'out_of_memory', reason };
  }
  if (TORCHRUN_WORKER_SIGKILL.test(logTail)) {
    const reason =
      "a torchrun worker was killed by SIGKILL, not by the orchestrator: most likely the kernel's out-of-memory killer";
    return { end: 'out_of_memory', reason };
  }

  const lastLines = logTail.split(/\r?\n/).slice(-REASON_LOG_LINES).join('\n').trim();
  const tail = lastLines === '' ? '; no log output' : `; last lines of the log:\n${lastLines}`;
  return { end: 'failed', reason: `${describeExit(exit)}${tail}` };
}

function describeExit(exit: PipelineExit): string {
  if (exit.signal !== null) return `killed by signal ${exit.signal}`;
  if (exit.code !== null) return `pipeline exited with code ${exit.code}`;
  return 'pipeline ended with neither an exit code nor a signal';
}

function truncate(text: string, maxLength: number): string {
  return text.length <= maxLength ? text : `${text.slice(0, maxLength - 1)}…`;
}
