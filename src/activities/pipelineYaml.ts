/**
 * YAML for the pipeline's own reader. Python pipelines read configs with PyYAML, which follows
 * YAML 1.1: a float needs a decimal point there, so `1e-8` (how JavaScript and YAML 1.2 write it)
 * would reach the pipeline as the string "1e-8". Floats in exponent form are written `1.0e-8`.
 */
import YAML from 'yaml';

const PYYAML_FLOAT = {
  identify: (value: unknown) => typeof value === 'number' && Number.isFinite(value) && !Number.isInteger(value),
  default: true,
  tag: 'tag:yaml.org,2002:float',
  // Only used for writing: a pattern that matches nothing leaves parsing to the standard tags.
  test: /$^/,
  resolve: (source: string) => Number(source),
  stringify: ({ value }: { value: unknown }) => {
    const text = String(value);
    return text.includes('e') && !text.includes('.') ? text.replace('e', '.0e') : text;
  },
};

export function stringifyForPipeline(config: unknown): string {
  return YAML.stringify(config, { customTags: (tags) => [PYYAML_FLOAT, ...tags] });
}
