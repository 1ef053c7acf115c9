/**
 * secrets — the credentials vault (envelope encryption under master keys
 * named by kid). Values leave only through `readSecret`, for executors; they
 * never reach signals, logs, job payloads, errors or API responses.
 */
export { deleteSecret, listSecrets, putSecret, readSecret, rotateEncryption, type SecretView, type VaultDeps } from './vault.ts';
export { generateMasterKeys, masterKeysProblem, parseMasterKeys, type MasterKeys } from './keys.ts';
export { VaultIntegrityError } from './envelope.ts';
