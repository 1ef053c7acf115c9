/**
 * Master keys: `SIGNALBUS_ENCRYPTION_KEYS` = `kid:base64key,…`, each key 32
 * bytes. The first one wraps new data keys; every one can unwrap, so a key
 * can be rotated in, re-wrapped to (`signalbus keys rotate-encryption`) and
 * only then retired.
 */
import { randomBytes } from 'node:crypto';

export interface MasterKey {
  kid: string;
  key: Buffer;
}

export interface MasterKeys {
  /** The key new secrets are wrapped with. */
  current: MasterKey;
  byKid: ReadonlyMap<string, MasterKey>;
}

const KID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Why `value` is not a valid key list, or undefined. Never echoes key material. */
export function masterKeysProblem(value: string): string | undefined {
  const seen = new Set<string>();
  const entries = value.split(',');
  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(':');
    const kid = colon > 0 ? entry.slice(0, colon).trim() : '';
    if (!KID.test(kid)) return `entry ${index + 1} must be kid:base64key with a kid of letters, digits, _ . -`;
    if (seen.has(kid)) return `kid ${kid} appears twice`;
    seen.add(kid);
    const material = entry.slice(colon + 1).trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(material) || Buffer.from(material, 'base64').length !== 32) {
      return `the key of kid ${kid} must be 32 bytes, base64-encoded`;
    }
  }
  return undefined;
}

export function parseMasterKeys(value: string): MasterKeys {
  const problem = masterKeysProblem(value);
  if (problem) throw new Error(`SIGNALBUS_ENCRYPTION_KEYS: ${problem}`);
  const keys = value.split(',').map((entry) => {
    const colon = entry.indexOf(':');
    return { kid: entry.slice(0, colon).trim(), key: Buffer.from(entry.slice(colon + 1).trim(), 'base64') };
  });
  return { current: keys[0]!, byKid: new Map(keys.map((key) => [key.kid, key])) };
}

/** A fresh key list of one key, for the embedded development database. */
export function generateMasterKeys(kid = `dev-${new Date().toISOString().slice(0, 10)}`): string {
  return `${kid}:${randomBytes(32).toString('base64')}`;
}
