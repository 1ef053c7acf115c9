/**
 * CEL values back to JSON, for a manifest's outputs (install steps' and rule
 * handlers' params and payloads): CEL ints (bigint) become JSON integers, a
 * field whose expression gave `null` is left out (docs/packages.md, "Output
 * values"), and CEL maps become plain objects.
 */
import { DomainError } from '../core/errors.ts';
import type { CelProgram } from './cel.ts';

export function celToJson(value: unknown, where: string): unknown {
  if (typeof value === 'bigint') {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new DomainError('validation_failed', `${where}: ${value} does not fit a JSON integer`);
    }
    return Number(value);
  }
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((item, index) => celToJson(item, `${where}[${index}]`));
  if (value instanceof Map) return fieldsToJson([...value.entries()].map(([key, item]) => [String(key), item]), where);
  if (value !== null && typeof value === 'object') return fieldsToJson(Object.entries(value), where);
  return value;
}

function fieldsToJson(entries: [string, unknown][], where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, item] of entries) {
    if (item !== null && item !== undefined) out[key] = celToJson(item, `${where}.${key}`);
  }
  return out;
}

/** Evaluates one program per field; `null` results are left out. */
export function evaluateFields(programs: Record<string, CelProgram>, variables: Record<string, unknown>, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, program] of Object.entries(programs)) {
    const value = program(variables);
    if (value !== null && value !== undefined) out[field] = celToJson(value, `${where}.${field}`);
  }
  return out;
}
