/** Task queue of the study workers: study and trial workflows, and the Optuna activities. */
export const STUDY_TASK_QUEUE = 'hpo-study';

/** Default task queue of the GPU workers, which run the training activity. */
export const DEFAULT_GPU_TASK_QUEUE = 'hpo-gpu';
