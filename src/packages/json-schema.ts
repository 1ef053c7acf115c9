/**
 * JSON Schema for package authors' documents — the config schema and each
 * signal's payload schema — compiled and applied with ajv (draft 2020-12,
 * with ajv-formats). Strict mode, so an unknown keyword such as `requird` is
 * a mistake reported at check time, not a constraint silently ignored.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import formatsModule, { type FormatsPlugin } from 'ajv-formats';
import type { FieldError } from '../core/errors.ts';

// ajv-formats is CommonJS: its plugin is the module's `default` under ESM interop.
const addFormats = (formatsModule as unknown as { default: FormatsPlugin }).default;
const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true, logger: false });
addFormats(ajv);

export type CompiledSchema = { ok: true; validate: ValidateFunction } | { ok: false; message: string };

/** Compiles a JSON Schema document; a failure carries ajv's message. */
export function compileJsonSchema(schema: unknown): CompiledSchema {
  try {
    return { ok: true, validate: ajv.compile(schema as object) };
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
}

/** A value's errors against a compiled schema; paths are JSON pointers (`/amount`, `` for the root). */
export function schemaErrors(validate: ValidateFunction, value: unknown): FieldError[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error: ErrorObject) => ({
    path: error.keyword === 'required' ? `${error.instancePath}/${String(error.params.missingProperty)}` : error.instancePath,
    message: error.message ?? 'is not valid',
  }));
}
