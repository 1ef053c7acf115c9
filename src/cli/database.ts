/**
 * Which database a command uses: `DATABASE_URL`, or else the embedded cluster
 * in the data dir — found running, or started for the length of the command.
 */
import type { Config } from '../config.ts';
import { ensureEmbeddedDatabase } from '../db/embedded.ts';

export interface ResolvedDatabase {
  url: string;
  embedded: boolean;
  /** The embedded cluster's directory. */
  pgData?: string;
  stop(): Promise<void>;
}

export async function resolveDatabase(config: Config, log: (message: string) => void): Promise<ResolvedDatabase> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, embedded: false, stop: async () => {} };
  const embedded = await ensureEmbeddedDatabase(config.SIGNALBUS_DATA_DIR, { log });
  return { url: embedded.url, embedded: true, pgData: embedded.pgData, stop: () => embedded.stop() };
}
