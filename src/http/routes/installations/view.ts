import type { ApiContext } from '../../context.ts';
import type { InstallationRow } from '../../../packages/installation-model.ts';
import { installationView } from '../../schemas-installations.ts';

/** The installation as answered: with its hook URL, on this server's origin, when its package receives webhooks. */
export function viewOf(c: ApiContext, row: InstallationRow) {
  const manifest = c.get('deps').packages.getVersion(row.package, row.version)?.manifest;
  return installationView(row, manifest?.webhook ? new URL(c.req.url).origin : null);
}
