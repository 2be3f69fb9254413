/**
 * Failure types the training activity throws and the trial workflow reads. This module has no
 * imports, so workflow code can use it without pulling Node APIs into the workflow bundle.
 */

/** A run handed back by a worker that shuts down (SIGTERM, preemption, Ctrl-C). */
export const WORKER_SHUTDOWN_FAILURE = 'WorkerShutdown';

/** The pipeline command cannot be started: the same on every worker, so never retried. */
export const PIPELINE_START_FAILURE = 'PipelineStartError';
