/** Public API of the study-config module. Workflow code should import trialConfig.ts directly, because load.ts uses Node's fs. */
export { getPath, hasPath, setPath } from './dotpath';
export { loadStudySpec, parseStudySpec, type LoadedStudySpec, type LoadStudySpecOptions, type ParseStudySpecOptions } from './load';
export { extendSearchSpaceForNasLite, type NasLiteOptions } from './nasLite';
export { objectiveColumnFor } from './objective';
export { ConfigError, searchSpaceFingerprint, type ConfigIssue } from './schema';
export { buildFinalConfig, buildTrialConfig, trialRunId } from './trialConfig';
