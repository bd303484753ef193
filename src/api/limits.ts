/**
 * What a request may make the server do, checked cheaply before the expensive parts (ajv with
 * allErrors, YAML, topology validation) ever see it. Pure: every function takes text or values and
 * answers; the server wires them into Fastify's parsers and hooks.
 *
 * Why each check exists: ajv with `allErrors` walks every item of an array even after `maxItems` has
 * failed (350k `{}` items made a million problems and froze the process for seconds), `JSON.parse`
 * and the YAML composer recurse (deep nesting ends in a stack overflow after seconds of work), and a
 * body declared in another charset would otherwise be read as UTF-8.
 */

/** Deeper than any request needs (a topology is about 8 levels deep), far below a stack overflow. */
export const NESTING_DEPTH_MAX = 32;
/** The most items an array of a body may have when its schema sets no bound of its own. */
export const ARRAY_ITEMS_MAX = 10_000;
/** The longest string a body may carry when its schema sets no bound of its own. */
export const STRING_CHARS_MAX = 64 * 1024;

/**
 * How deep the JSON text nests (objects and arrays), scanning at most until `max` is passed. Strings
 * are skipped with their escapes, so a `[` inside a string does not count. O(length), no allocation.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * An upper bound of how deep a YAML text nests: flow collections (`[`, `{`) outside quotes, plus the
 * block structure of each line (its indentation and the `- ` and `key: ` markers that open a level
 * on the same line). Over-counting is harmless (the limit is far above real topologies); what matters
 * is that no document the YAML composer would recurse on deeply passes.
 */
export function yamlDepthExceeds(text: string, max: number): boolean {
  let flow = 0;
  let quote = 0; // the quote character while inside a flow-context quoted scalar, else 0
  let lineStart = true;
  let block = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a /* \n */) {
      lineStart = true;
      block = 0;
      continue;
    }
    if (quote !== 0) {
      if (c === 0x5c && quote === 0x22) i++;
      else if (c === quote) quote = 0;
      continue;
    }
    if (lineStart) {
      // Indentation: a level is at least one column, so columns bound the levels.
      if (c === 0x20) {
        if (++block > max * 4) return true;
        continue;
      }
      lineStart = false;
    }
    if (c === 0x23 /* # */ && (i === 0 || text.charCodeAt(i - 1) === 0x20)) {
      // A comment runs to the end of the line.
      const nl = text.indexOf('\n', i);
      if (nl < 0) break;
      i = nl - 1;
      continue;
    }
    if (c === 0x22 || (c === 0x27 /* ' */ && flow > 0)) quote = c;
    else if (c === 0x5b || c === 0x7b) {
      if (++flow > max) return true;
    } else if (c === 0x5d || c === 0x7d) flow = Math.max(0, flow - 1);
    else if (flow === 0 && c === 0x2d /* - */ && text.charCodeAt(i + 1) === 0x20) {
      // `- - - x` nests sequences on one line.
      if (++block > max * 4) return true;
    }
  }
  return false;
}

/** The subset of a JSON schema the structural check reads. */
export interface SchemaShape {
  type?: string | string[];
  maxItems?: number;
  maxLength?: number;
  items?: SchemaShape;
  properties?: Record<string, SchemaShape>;
  additionalProperties?: boolean | SchemaShape;
  anyOf?: SchemaShape[];
  oneOf?: SchemaShape[];
}

export interface StructureProblem {
  path: string;
  message: string;
}

/**
 * Checks array lengths and string lengths of a parsed body against its route's schema (or the
 * global bounds where the schema sets none), stopping at the first excess. It never descends into an
 * array that is too long, so its cost is bounded by what the schema allows, whatever the body holds;
 * ajv's full validation runs only after it passes.
 */
export function checkStructure(
  value: unknown,
  schema: SchemaShape | undefined,
  path = 'body',
  depth = 0,
): StructureProblem | undefined {
  if (depth > NESTING_DEPTH_MAX) return { path, message: `nests deeper than ${NESTING_DEPTH_MAX} levels` };
  if (typeof value === 'string') {
    const max = maxOf(schema, 'maxLength') ?? STRING_CHARS_MAX;
    return value.length > max ? { path, message: `must not be longer than ${max} characters` } : undefined;
  }
  if (Array.isArray(value)) {
    const max = maxOf(schema, 'maxItems') ?? ARRAY_ITEMS_MAX;
    if (value.length > max) return { path, message: `must not have more than ${max} items` };
    const items = branches(schema)
      .map((s) => s.items)
      .find((s) => s !== undefined);
    for (let i = 0; i < value.length; i++) {
      const p = checkStructure(value[i], items, `${path}/${i}`, depth + 1);
      if (p !== undefined) return p;
    }
    return undefined;
  }
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value);
    if (keys.length > ARRAY_ITEMS_MAX)
      return { path, message: `must not have more than ${ARRAY_ITEMS_MAX} keys` };
    const bs = branches(schema);
    for (const k of keys) {
      if (k.length > STRING_CHARS_MAX) return { path, message: 'has a key longer than any field name' };
      const sub = bs.map((s) => s.properties?.[k] ?? additional(s)).find((s) => s !== undefined);
      const p = checkStructure((value as Record<string, unknown>)[k], sub, `${path}/${k}`, depth + 1);
      if (p !== undefined) return p;
    }
  }
  return undefined;
}

const additional = (s: SchemaShape) =>
  typeof s.additionalProperties === 'object' ? s.additionalProperties : undefined;

/** A schema and, for a union (TypeBox's Nullable, Optional unions), each of its branches. */
function branches(schema: SchemaShape | undefined): SchemaShape[] {
  if (schema === undefined) return [];
  const alts = [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])];
  return alts.length === 0 ? [schema] : [schema, ...alts.flatMap(branches)];
}

/** The largest bound any branch allows (a union allows what its widest branch does). */
function maxOf(schema: SchemaShape | undefined, key: 'maxItems' | 'maxLength'): number | undefined {
  const found = branches(schema)
    .map((s) => s[key])
    .filter((n): n is number => typeof n === 'number');
  return found.length === 0 ? undefined : Math.max(...found);
}

/**
 * The charset a Content-Type names, lower-cased, or undefined when it names none. Bodies are read as
 * UTF-8 only; anything else is refused (415) rather than misread.
 */
export function charsetOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType);
  return m?.[1]?.toLowerCase();
}

export const isUtf8 = (charset: string | undefined) =>
  charset === undefined || charset === 'utf-8' || charset === 'utf8';
