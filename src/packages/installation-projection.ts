import { keyedProjection } from '../projections/keyed.ts';
import { evolveInstallation, INSTALLATION_COLUMNS, installationIdOf, type InstallationRow } from './installation-model.ts';

export const installationsProjection = keyedProjection<InstallationRow>({
  name: 'installations',
  table: 'installations',
  columns: INSTALLATION_COLUMNS,
  handles: (type) => type.startsWith('installation.'),
  keyOf: installationIdOf,
  evolve: evolveInstallation,
  creates: (signal) => signal.type === 'installation.requested',
});
