// Entry point of the workflow bundle: only deterministic code may be reachable from here.
export { studyWorkflow } from './study';
export { trialWorkflow } from './trial';
