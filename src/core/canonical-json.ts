import { hash } from 'node:crypto';
import { configure } from 'safe-stable-stringify';

const stableStringify = configure({ deterministic: true, circularValue: TypeError, bigint: false });

/**
 * Canonical JSON (object keys sorted, no whitespace, JSON.stringify's rules
 * otherwise) so equal payloads hash equally whatever key order the caller
 * sent. `safe-stable-stringify` does it in one pass; it is on the emit path.
 */
export function canonicalJson(value: unknown): string {
  return stableStringify(value) ?? 'null';
}

/** One-shot: no Hash object per call, which the emit path makes twice per signal. */
export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}
