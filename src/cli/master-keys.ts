/**
 * Where the vault's master keys come from: `SIGNALBUS_ENCRYPTION_KEYS`, or —
 * for the embedded development database only — a key generated once into
 * the data dir (mode 0600). A server on any other database without keys is a
 * startup error: secrets must never be sealed under a throwaway key.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, type Config } from '../config.ts';
import { generateMasterKeys, masterKeysProblem } from '../secrets/keys.ts';
import type { ResolvedDatabase } from './database.ts';

export async function resolveMasterKeys(config: Config, database: Pick<ResolvedDatabase, 'embedded'>): Promise<string> {
  if (config.SIGNALBUS_ENCRYPTION_KEYS) return config.SIGNALBUS_ENCRYPTION_KEYS;
  if (!database.embedded) {
    throw new ConfigError([
      'SIGNALBUS_ENCRYPTION_KEYS: required with DATABASE_URL (kid:base64key,… with 32-byte keys, e.g. `k1:$(openssl rand -base64 32)`); only the embedded database generates its own',
    ]);
  }
  const file = path.join(path.resolve(config.SIGNALBUS_DATA_DIR), 'encryption-keys');
  const saved = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (saved && !masterKeysProblem(saved)) return saved;
  const keys = generateMasterKeys();
  await writeFile(file, `${keys}\n`, { mode: 0o600 });
  return keys;
}
