/**
 * Prefixed, time-sortable identifiers: `<prefix>_<10 chars of ms time><16 random>`,
 * all in lowercase Crockford base32 so ids sort by creation time as strings.
 */
import { customAlphabet } from 'nanoid';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const randomPart = customAlphabet(ALPHABET, 16);

export const ID_PREFIXES = {
  org: 'org',
  apiKey: 'key',
  signal: 'sig',
  directive: 'dir',
  execution: 'exe',
  installation: 'ins',
  delivery: 'dlv',
  replay: 'rpl',
  request: 'req',
} as const;
export type IdKind = keyof typeof ID_PREFIXES;

let lastMs = -1;
let lastEncoded = '';

/** Batches draw many ids in one millisecond: its encoding is kept. */
function encodeTime(ms: number): string {
  if (ms === lastMs) return lastEncoded;
  lastMs = ms;
  lastEncoded = encodeTimeOnce(ms);
  return lastEncoded;
}

function encodeTimeOnce(ms: number): string {
  let out = '';
  let rest = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

export function newId(kind: IdKind, now: number = Date.now()): string {
  return `${ID_PREFIXES[kind]}_${encodeTime(now)}${randomPart()}`;
}

const ID_PATTERN = /^[a-z]{3}_[0-9a-hjkmnp-tv-z]{26}$/;

/** True when `value` looks like an id of `kind`; cheap guard before touching the database. */
export function isId(kind: IdKind, value: string): boolean {
  return value.startsWith(`${ID_PREFIXES[kind]}_`) && ID_PATTERN.test(value);
}
