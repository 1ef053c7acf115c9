import { publicBase, type ApiContext } from '../../context.ts';
import type { InstallationRow } from '../../../packages/installation-model.ts';
import { installationView } from '../../schemas-installations.ts';

/** The installation as answered: with its hook URL (SIGNALBUS_PUBLIC_URL, else this request's origin) when its package receives webhooks. */
export function viewOf(c: ApiContext, row: InstallationRow) {
  const manifest = c.get('deps').packages.getVersion(row.package, row.version)?.manifest;
  return installationView(row, manifest?.webhook ? publicBase(c) : null);
}
