/**
 * Which default policy rules apply to a directive an installation proposes:
 * its package's, named `<package>.<id>`, while the installation is installed
 * (or installing: its own install steps propose under them). A disabled,
 * failed or uninstalled installation's rules apply to nothing.
 */
import type { PackagePolicyLookup } from '../directives/package-policy.ts';
import { findInstallation } from './installation-read.ts';
import { packagePolicyRules } from './installation-steps.ts';
import type { PackageRegistry } from './registry.ts';

export function packagePolicyLookup(registry: PackageRegistry): PackagePolicyLookup {
  return async (db, tenant, installationId) => {
    const row = await findInstallation(db, tenant.schema, installationId);
    if (!row || (row.status !== 'installed' && row.status !== 'installing')) return null;
    // An upgrade's own steps propose under the version they upgrade to.
    const version = row.pending?.operation === 'upgrade' ? row.pending.version : row.version;
    const manifest = registry.getVersion(row.package, version)?.manifest;
    if (!manifest) return null;
    return {
      key: `${manifest.name}@${manifest.version}`,
      installation: { id: row.id, package: row.package, version, config: row.config },
      rules: packagePolicyRules(manifest),
    };
  };
}
