/**
 * NAS-lite (method `arch_params_hpo`): architecture search by adding the model's size
 * parameters to the search space. The graph itself is never mutated.
 */
import type { SearchParam } from '../common/types';
import { getPath, hasPath } from './dotpath';

export interface NasLiteOptions {
  enabled: boolean;
  method: string;
  max_candidates: number | null;
}

/** Models whose config has the architecture parameters below. */
export const NAS_LITE_MODELS = ['v3', 'v4', 'v5'];

const ARCHITECTURE_PARAMS: Array<Omit<SearchParam, 'source'>> = [
  { name: 'd_model', path: 'model_config.d_model', type: 'categorical', choices: [128, 192, 256] },
  { name: 'encoder_layers', path: 'model_config.encoder_layers', type: 'int', low: 1, high: 4, step: 1, log: false },
  { name: 'cross_attn_layers', path: 'model_config.cross_attn_layers', type: 'int', low: 1, high: 4, step: 1, log: false },
];

export interface NasLitePlan {
  added: SearchParam[];
  /** Reasons for the architecture parameters left out, one line each, for the caller's notices. */
  skipped: string[];
}

/** Returns the parameters NAS-lite adds to `userSpace` and the reasons for the ones it leaves out. */
export function planNasLite(baseConfig: Record<string, unknown>, userSpace: SearchParam[], nas: NasLiteOptions): NasLitePlan {
  if (!nas.enabled) return { added: [], skipped: [] };
  if (nas.method !== 'arch_params_hpo') {
    throw new Error(`Unknown NAS-lite method ${JSON.stringify(nas.method)}: expected "arch_params_hpo".`);
  }

  const model = hasPath(baseConfig, 'model_config.model') ? getPath(baseConfig, 'model_config.model') : undefined;
  if (typeof model !== 'string' || !NAS_LITE_MODELS.includes(model)) {
    return {
      added: [],
      skipped: [`NAS-lite adds no parameters: model_config.model is ${JSON.stringify(model ?? null)}, and only ${NAS_LITE_MODELS.join(', ')} are supported.`],
    };
  }

  const added: SearchParam[] = [];
  const skipped: string[] = [];
  const takenNames = new Set(userSpace.map((param) => param.name));
  for (const template of ARCHITECTURE_PARAMS) {
    if (userSpace.some((param) => param.path === template.path)) continue;
    if (!hasPath(baseConfig, template.path)) {
      skipped.push(`NAS-lite skips ${template.path}: the key is not in the config of model ${model}.`);
      continue;
    }

    const name = freeName(template.name, takenNames);
    takenNames.add(name);
    added.push({ ...template, name, source: 'nas_lite' });
  }
  return { added, skipped };
}

/** Returns `base`, or `nas_<base>` when a user parameter already has that name, with a counter if needed. */
function freeName(base: string, taken: Set<string>): string {
  if (!taken.has(base)) return base;
  const prefixed = `nas_${base}`;
  if (!taken.has(prefixed)) return prefixed;

  let counter = 2;
  while (taken.has(`${prefixed}_${counter}`)) counter += 1;
  return `${prefixed}_${counter}`;
}

/** Returns the user's search space followed by the parameters that NAS-lite adds. */
export function extendSearchSpaceForNasLite(
  baseConfig: Record<string, unknown>,
  userSpace: SearchParam[],
  nas: NasLiteOptions,
): SearchParam[] {
  return [...userSpace, ...planNasLite(baseConfig, userSpace, nas).added];
}

/** Returns the trial budget after the NAS-lite cap: `max_candidates` applies only while NAS-lite is enabled. */
export function cappedTrialCount(nTrials: number, nas: NasLiteOptions): number {
  if (!nas.enabled || nas.max_candidates === null) return nTrials;
  return Math.min(nTrials, nas.max_candidates);
}
