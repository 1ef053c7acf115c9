import { describe, expect, it } from 'vitest';
import { fingerprintOf, last4Of, openSecret, rewrapSecret, sealSecret, VaultIntegrityError } from './envelope.ts';
import { generateMasterKeys, masterKeysProblem, parseMasterKeys } from './keys.ts';

const keys = parseMasterKeys(generateMasterKeys('k1'));
const identity = 'org_acme/org/stripe_api_key';
const value = 'sk_test_51Hx-canary-value-9f3a';

describe('envelope encryption', () => {
  it('opens what it sealed, with a fresh data key and IV every time', () => {
    const one = sealSecret(keys, identity, value);
    const two = sealSecret(keys, identity, value);
    expect(openSecret(keys, identity, one)).toBe(value);
    expect(one.ciphertext.equals(two.ciphertext)).toBe(false);
    expect(one.wrappedKey.equals(two.wrappedKey)).toBe(false);
    expect(one.ciphertext.includes(Buffer.from(value))).toBe(false);
    expect(one.kid).toBe('k1');
  });

  it('fails loudly when any stored byte changes', () => {
    const sealed = sealSecret(keys, identity, value);
    for (const part of ['ciphertext', 'wrappedKey'] as const) {
      for (let index = 0; index < sealed[part].length; index += 7) {
        const tampered = Buffer.from(sealed[part]);
        tampered[index]! ^= 0x01;
        expect(() => openSecret(keys, identity, { ...sealed, [part]: tampered }), `${part}[${index}]`).toThrow(VaultIntegrityError);
      }
      expect(() => openSecret(keys, identity, { ...sealed, [part]: sealed[part].subarray(0, 10) })).toThrow(VaultIntegrityError);
    }
  });

  it('binds a secret to its org, owner and name: a copied row does not open elsewhere', () => {
    const sealed = sealSecret(keys, identity, value);
    expect(() => openSecret(keys, 'org_other/org/stripe_api_key', sealed)).toThrow(VaultIntegrityError);
    expect(() => openSecret(keys, 'org_acme/org/openai_api_key', sealed)).toThrow(VaultIntegrityError);
  });

  it('re-wraps under a new first key without touching the value, and needs the old key only until then', () => {
    const sealed = sealSecret(keys, identity, value);
    const rotated = parseMasterKeys(`${generateMasterKeys('k2')},${[...keys.byKid.values()].map((key) => `${key.kid}:${key.key.toString('base64')}`).join(',')}`);
    const rewrapped = rewrapSecret(rotated, identity, sealed);
    expect(rewrapped.kid).toBe('k2');
    expect(rewrapped.ciphertext.equals(sealed.ciphertext)).toBe(true);
    const onlyNew = parseMasterKeys(`k2:${rotated.current.key.toString('base64')}`);
    expect(openSecret(onlyNew, identity, rewrapped)).toBe(value);
    expect(() => openSecret(onlyNew, identity, sealed)).toThrow(/no master key with kid k1/);
  });

  it('shows a keyed fingerprint and the last four characters only of values long enough', () => {
    expect(fingerprintOf(keys, value)).toMatch(/^hmac-sha256:[0-9a-f]{16}$/);
    expect(fingerprintOf(keys, value)).toBe(fingerprintOf(keys, value));
    expect(fingerprintOf(keys, value)).not.toBe(fingerprintOf(parseMasterKeys(generateMasterKeys('k9')), value));
    expect(last4Of(value)).toBe('9f3a');
    expect(last4Of('short-secret')).toBe('cret');
    expect(last4Of('tiny')).toBe('');
    expect(last4Of('elevenchars')).toBe('');
  });
});

describe('master key lists', () => {
  it.each([
    ['k1:AAAA', /32 bytes/],
    [`${'A'.repeat(44)}`, /kid:base64key/],
    [`k1:${'A'.repeat(43)}=,k1:${'B'.repeat(43)}=`, /twice/],
    [`bad kid:${'A'.repeat(43)}=`, /kid:base64key/],
  ])('refuse %s', (value, message) => {
    expect(masterKeysProblem(value)).toMatch(message);
    expect(() => parseMasterKeys(value)).toThrow(/^SIGNALBUS_ENCRYPTION_KEYS: /);
  });

  it('take the first key as current and keep every key for unwrapping, never echoing key material', () => {
    const text = `${generateMasterKeys('new')},${generateMasterKeys('old')}`;
    const parsed = parseMasterKeys(text);
    expect(parsed.current.kid).toBe('new');
    expect([...parsed.byKid.keys()]).toEqual(['new', 'old']);
    const material = text.split(',')[0]!.split(':')[1]!;
    expect(masterKeysProblem(`${text},new:${material}`)).not.toContain(material);
  });
});
