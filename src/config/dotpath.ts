/**
 * Dot paths into a parsed config document, such as `training_config.optimizer.lr`.
 *
 * A segment that is a non-negative integer without leading zeros indexes a list
 * (`model_config.mlp_head.hidden_dims.0`). Only own keys of plain mappings count, so
 * `constructor` or `toString` never resolve through the prototype. A path with an empty
 * segment or a `__proto__` segment is invalid, and every function here throws on it.
 */

const LIST_INDEX = /^(0|[1-9][0-9]*)$/;

export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Splits a dot path into its segments, or throws when the path is invalid. */
export function parseDotPath(path: string): string[] {
  const segments = path.split('.');
  for (const segment of segments) {
    if (segment === '') {
      throw new Error(`Invalid dot path "${path}": it has an empty segment. Write it as section.key.subkey.`);
    }
    if (segment === '__proto__') {
      throw new Error(`Invalid dot path "${path}": the segment "__proto__" is not allowed.`);
    }
  }
  return segments;
}

/** Returns the child of `container` at `segment`, with `found: false` when there is none. */
function childAt(container: unknown, segment: string): { found: boolean; value?: unknown } {
  if (Array.isArray(container)) {
    if (!LIST_INDEX.test(segment)) return { found: false };
    const index = Number(segment);
    return index < container.length ? { found: true, value: container[index] } : { found: false };
  }
  if (isMapping(container) && Object.hasOwn(container, segment)) {
    return { found: true, value: container[segment] };
  }
  return { found: false };
}

/**
 * Returns how many leading segments of `path` resolve in `obj`: equal to the number of
 * segments when the whole path exists. Error messages use it to name the first missing key.
 */
export function resolvedDepth(obj: unknown, path: string): number {
  const segments = parseDotPath(path);
  let current = obj;
  for (let depth = 0; depth < segments.length; depth += 1) {
    const child = childAt(current, segments[depth]);
    if (!child.found) return depth;
    current = child.value;
  }
  return segments.length;
}

export function hasPath(obj: unknown, path: string): boolean {
  return resolvedDepth(obj, path) === parseDotPath(path).length;
}

/** Returns the value at `path` (which may be null), or throws when the path does not exist. */
export function getPath(obj: unknown, path: string): unknown {
  const segments = parseDotPath(path);
  let current = obj;
  for (let depth = 0; depth < segments.length; depth += 1) {
    const child = childAt(current, segments[depth]);
    if (!child.found) throw missingPathError(path, segments, depth);
    current = child.value;
  }
  return current;
}

function missingPathError(path: string, segments: string[], depth: number): Error {
  const parent = depth === 0 ? 'the document' : `"${segments.slice(0, depth).join('.')}"`;
  return new Error(`Dot path "${path}" not found: ${parent} has no key "${segments[depth]}".`);
}

/**
 * Returns a deep copy of JSON-like data: mappings, lists and scalars, which is all a config
 * contains. It avoids `structuredClone`, which Temporal's workflow sandbox may not provide.
 */
export function deepCopy<T>(value: T): T {
  if (Array.isArray(value)) return value.map((item) => deepCopy(item)) as T;
  if (isMapping(value)) {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) copy[key] = deepCopy(item);
    return copy as T;
  }
  return value;
}

/** Sets `value` at an existing `path` of `obj` in place. Only for objects the caller owns, such as a fresh copy. */
export function assignPath(obj: unknown, path: string, value: unknown): void {
  const segments = parseDotPath(path);
  let current = obj;
  for (let depth = 0; depth < segments.length - 1; depth += 1) {
    const child = childAt(current, segments[depth]);
    if (!child.found) throw missingPathError(path, segments, depth);
    current = child.value;
  }

  const last = segments[segments.length - 1];
  if (!childAt(current, last).found) throw missingPathError(path, segments, segments.length - 1);
  if (Array.isArray(current)) {
    current[Number(last)] = value;
  } else {
    (current as Record<string, unknown>)[last] = value;
  }
}

/** Returns a deep copy of `obj` with a copy of `value` set at the existing `path`. `obj` is not changed. */
export function setPath<T>(obj: T, path: string, value: unknown): T {
  const copy = deepCopy(obj);
  assignPath(copy, path, deepCopy(value));
  return copy;
}
