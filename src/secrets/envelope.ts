/**
 * Envelope encryption: each secret gets a fresh 256-bit data key; the value
 * is sealed under it with AES-256-GCM, and the data key is sealed under a
 * master key named by its kid. Both seals bind the secret's identity
 * (schema, owner, name) as associated data, so a row copied to another name
 * or org fails to open. Any change to a stored byte fails loudly.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { MasterKey, MasterKeys } from './keys.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Sealed {
  kid: string;
  wrappedKey: Buffer;
  ciphertext: Buffer;
}

export class VaultIntegrityError extends Error {
  constructor(what: string) {
    super(`${what} failed its integrity check: the stored secret was altered or belongs elsewhere`);
    this.name = 'VaultIntegrityError';
  }
}

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

function open(key: Buffer, sealed: Buffer, aad: Buffer, what: string): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new VaultIntegrityError(what);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new VaultIntegrityError(what);
  }
}

const aadOf = (identity: string, part: 'key' | 'value') => Buffer.from(`signalbus:secret:${part}:${identity}`);

export function sealSecret(keys: MasterKeys, identity: string, value: string): Sealed {
  const dataKey = randomBytes(32);
  try {
    return {
      kid: keys.current.kid,
      wrappedKey: seal(keys.current.key, dataKey, aadOf(identity, 'key')),
      ciphertext: seal(dataKey, Buffer.from(value, 'utf8'), aadOf(identity, 'value')),
    };
  } finally {
    dataKey.fill(0);
  }
}

/** A secret sealed under a master key this process was not given (retired too early, or another deployment's). */
export class UnknownMasterKeyError extends Error {
  constructor(kid: string) {
    super(`no master key with kid ${kid} is configured (SIGNALBUS_ENCRYPTION_KEYS)`);
    this.name = 'UnknownMasterKeyError';
  }
}

function masterOf(keys: MasterKeys, kid: string): MasterKey {
  const master = keys.byKid.get(kid);
  if (!master) throw new UnknownMasterKeyError(kid);
  return master;
}

export function openSecret(keys: MasterKeys, identity: string, sealed: Sealed): string {
  const dataKey = open(masterOf(keys, sealed.kid).key, sealed.wrappedKey, aadOf(identity, 'key'), 'the data key');
  try {
    return open(dataKey, sealed.ciphertext, aadOf(identity, 'value'), 'the secret value').toString('utf8');
  } finally {
    dataKey.fill(0);
  }
}

/** Re-wraps the data key under the current master key; the value's ciphertext is unchanged. */
export function rewrapSecret(keys: MasterKeys, identity: string, sealed: Sealed): Sealed {
  const dataKey = open(masterOf(keys, sealed.kid).key, sealed.wrappedKey, aadOf(identity, 'key'), 'the data key');
  try {
    return { kid: keys.current.kid, wrappedKey: seal(keys.current.key, dataKey, aadOf(identity, 'key')), ciphertext: sealed.ciphertext };
  } finally {
    dataKey.fill(0);
  }
}

/**
 * A stable, non-reversible tag to tell values apart: an HMAC keyed by the
 * current master key, so it cannot be checked against guesses without it.
 */
export function fingerprintOf(keys: MasterKeys, value: string): string {
  return `hmac-sha256:${createHmac('sha256', keys.current.key).update(value, 'utf8').digest('hex').slice(0, 16)}`;
}

/** The last four characters, only when that leaves most of the value unshown. */
export function last4Of(value: string): string {
  const characters = [...value];
  return characters.length >= 12 ? characters.slice(-4).join('') : '';
}
