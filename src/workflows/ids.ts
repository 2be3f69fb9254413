/** Workflow IDs are business keys, so starting a study twice finds the running one. */
export function studyWorkflowId(studyName: string): string {
  return `study-${studyName}`;
}

export function trialWorkflowId(studyName: string, trialNumber: number): string {
  return `${studyName}-trial-${trialNumber}`;
}
