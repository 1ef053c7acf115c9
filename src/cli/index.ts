/**
 * cli — the `signalbus` command: process entry points only. It resolves the
 * database, builds the app through `src/app.ts` and calls domain verbs; it
 * holds no domain logic of its own. Nothing imports the cli.
 */
export { runStart } from './start.ts';
export { runMigrate, migrateEverything } from './migrate.ts';
export { runOrgsCreate, runKeysCreate } from './admin.ts';
