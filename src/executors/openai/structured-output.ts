/**
 * Structured output: the JSON Schema a directive asks the model to follow,
 * checked once more on our side (the model may ignore a non-strict schema,
 * or be cut off at max_tokens), and the model's output made fit for storage
 * as evidence on the directive and in a derived signal.
 *
 * Validation uses zod's JSON Schema import (`z.fromJSONSchema`, zod ≥ 4.2):
 * zod is already a dependency and maintained, and it covers what OpenAI's
 * strict mode accepts (objects, arrays, enums, anyOf, local $ref/$defs).
 * It refuses what it cannot check (if/then/else, `not`, external $ref) —
 * refused at proposal rather than silently passed. Swapping in ajv would
 * change only `compileOutputSchema`.
 */
import { z } from 'zod';

export type OutputCheck = { ok: true } | { ok: false; problems: string[] };

export interface OutputValidator {
  check(value: unknown): OutputCheck;
}

/** A validator for `schema`; throws an Error saying why when the schema cannot be checked. */
export function compileOutputSchema(schema: Record<string, unknown>): OutputValidator {
  let compiled: z.ZodType;
  try {
    compiled = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
  } catch (error) {
    // A hostile nesting overflows the converter's recursion: a RangeError, reported like any other refusal.
    throw new Error(`the schema cannot be used: ${error instanceof Error ? error.message : 'not a JSON Schema'}`);
  }
  return {
    check(value) {
      // Only validated, never replaced by zod's output: defaults the schema
      // names must not be filled into what the model actually said.
      const result = compiled.safeParse(value);
      if (result.success) return { ok: true };
      // Paths and messages only: the offending values are model output, kept out of error text.
      return {
        ok: false,
        problems: result.error.issues.slice(0, 5).map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`),
      };
    },
  };
}

/** Why `schema` cannot be used, or undefined: the params check at proposal. */
export function outputSchemaProblem(schema: Record<string, unknown>): string | undefined {
  try {
    compileOutputSchema(schema);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * Largest output kept as evidence, in characters. The output goes into the
 * `directive.succeeded` payload and, with `emit`, into a derived signal;
 * both must stay under the signal payload limit (256 KiB by default), or
 * the outcome could never be recorded and each retry would pay again.
 */
export const MAX_EVIDENCE_CHARS = 64 * 1024;
/** Deeper JSON is kept as text: signal payloads refuse nesting past 128 levels. */
const MAX_EVIDENCE_DEPTH = 64;

/** NUL and unpaired surrogates: PostgreSQL refuses them in jsonb (see core/storable-text.ts). */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export const storableText = (text: string): string => text.replace(UNSTORABLE, '\uFFFD');

/**
 * The parsed JSON with every string and key made storable, or undefined when
 * it nests deeper than signals allow. JSON escapes (`\u0000`) can put in a
 * parsed string what the raw text did not show.
 */
export function storableJson(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return storableText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_EVIDENCE_DEPTH) return undefined;
  if (Array.isArray(value)) {
    const items = value.map((item) => storableJson(item, depth + 1));
    return items.includes(undefined) ? undefined : items;
  }
  const entries: [string, unknown][] = [];
  for (const [key, item] of Object.entries(value)) {
    const stored = storableJson(item, depth + 1);
    if (stored === undefined) return undefined;
    entries.push([storableText(key), stored]);
  }
  return Object.fromEntries(entries);
}

/**
 * The output as stored: the parsed JSON when there is one and it fits,
 * else the text, cut at `MAX_EVIDENCE_CHARS` with `output_truncated` set.
 */
export function evidenceOf(text: string, parsed: { value: unknown } | undefined): { output: unknown; output_truncated?: true } {
  if (text.length > MAX_EVIDENCE_CHARS) return { output: storableText(text.slice(0, MAX_EVIDENCE_CHARS)), output_truncated: true };
  if (parsed) {
    const stored = storableJson(parsed.value);
    if (stored !== undefined) return { output: stored };
  }
  return { output: storableText(text) };
}
