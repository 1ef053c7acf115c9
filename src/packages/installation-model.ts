/**
 * The installation: a package version an org installed, folded from
 * `installation.*` signals into the `installations` projection. Requests
 * record intent (`requested`, `upgrade_requested`, `uninstall_requested`,
 * `retry_requested`); the worker's job records the outcome with the steps it
 * ran (`installed`, `upgraded`, `uninstalled`, or `failed` with the error
 * report). Only `installed` installations are live: their handlers, payload
 * schemas, policies and webhook endpoint.
 */
import type { Actor } from '../signals/actor.ts';
import type { SignalFacts, SignalRow } from '../signals/model.ts';
import { systemSignalOf } from '../signals/system.ts';

export const INSTALLATION_STATUSES = ['installing', 'installed', 'failed', 'disabled', 'uninstalled'] as const;
export type InstallationStatus = (typeof INSTALLATION_STATUSES)[number];

export const INSTALLATION_OPERATIONS = ['install', 'upgrade', 'uninstall'] as const;
export type InstallationOperation = (typeof INSTALLATION_OPERATIONS)[number];

/** One step a job ran: the platform's own (`config`, `secrets`, `policies`, …) then the manifest's. */
export interface InstallationStep {
  id: string;
  status: 'succeeded' | 'skipped' | 'failed';
  /** What the step did or why it failed, for the report; never a secret. */
  detail?: string;
}

/** The visible report of a failed operation. */
export interface InstallationError {
  operation: InstallationOperation;
  /** The version the operation was for (an upgrade's target). */
  version: string;
  attempt: number;
  /** A failed upgrade's new config, which its retry applies again. */
  config?: Record<string, unknown>;
  step: string;
  code: string;
  message: string;
}

/** An operation requested and not finished yet. */
export interface PendingOperation {
  operation: InstallationOperation;
  version: string;
  attempt: number;
  /** An upgrade's config for the new version; it replaces the config only when the upgrade succeeds. */
  config?: Record<string, unknown>;
}

export interface InstallationRow {
  id: string;
  package: string;
  version: string;
  config: Record<string, unknown>;
  /** Names of the secrets stored for it in the vault (owner: its id); never values. */
  secrets: string[];
  status: InstallationStatus;
  pending: PendingOperation | null;
  /** The steps of the last finished or failed operation. */
  steps: InstallationStep[];
  error: InstallationError | null;
  /** Where its handlers start reading the log: null = from the signal that installed it. */
  backfill_from: string | null;
  created_by: Actor;
  created_at: string;
  updated_at: string;
  /** The last signal folded into the row: an id, which an import keeps (a log position it would not). */
  last_signal_id: string;
}

export const INSTALLATION_COLUMNS = [
  'id', 'package', 'version', 'config', 'secrets', 'status', 'pending', 'steps', 'error',
  'backfill_from', 'created_by', 'created_at', 'updated_at', 'last_signal_id',
] as const satisfies readonly (keyof InstallationRow)[];

/** What every `installation.*` payload carries. */
export interface InstallationRef {
  installation_id: string;
  package: string;
  version: string;
}

export interface InstallationRequested extends InstallationRef {
  config: Record<string, unknown>;
  secrets: string[];
  backfill_from: string | null;
}

export interface InstallationOperationRequested extends InstallationRef {
  attempt: number;
}

export interface InstallationRetryRequested extends InstallationOperationRequested {
  operation: InstallationOperation;
  config?: Record<string, unknown>;
}

/** Signals recorded before upgrades took a config carry neither field: the config stays. */
export interface InstallationUpgradeRequested extends InstallationOperationRequested {
  /** The config the upgrade applies once it succeeds (the current one when none was given). */
  config?: Record<string, unknown>;
  /** Names of the installation's secrets, with those the upgrade stored (values never). */
  secrets?: string[];
}

export interface InstallationFinished extends InstallationRef {
  attempt: number;
  steps: InstallationStep[];
}

export interface InstallationUpgraded extends InstallationFinished {
  from_version: string;
  /** The config now in effect; absent on signals recorded before upgrades took a config. */
  config?: Record<string, unknown>;
}

export interface InstallationFailed extends InstallationFinished {
  error: InstallationError;
}

export interface InstallationConfigured extends InstallationRef {
  config: Record<string, unknown>;
  secrets: string[];
}

export const INSTALLATION_SIGNAL_TYPES = [
  'installation.requested',
  'installation.installed',
  'installation.failed',
  'installation.upgrade_requested',
  'installation.upgraded',
  'installation.configured',
  'installation.disabled',
  'installation.enabled',
  'installation.uninstall_requested',
  'installation.uninstalled',
  'installation.retry_requested',
] as const;

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'installation.requested': InstallationRequested;
    'installation.installed': InstallationFinished;
    'installation.failed': InstallationFailed;
    /** `version` is the target version. */
    'installation.upgrade_requested': InstallationUpgradeRequested;
    'installation.upgraded': InstallationUpgraded;
    'installation.configured': InstallationConfigured;
    'installation.disabled': InstallationRef;
    'installation.enabled': InstallationRef;
    'installation.uninstall_requested': InstallationOperationRequested;
    'installation.uninstalled': InstallationFinished;
    'installation.retry_requested': InstallationRetryRequested;
  }
}

export function installationIdOf(signal: SignalFacts): string | null {
  const id = (signal.payload as { installation_id?: unknown }).installation_id;
  return typeof id === 'string' ? id : null;
}

/** The installation's subject on its signals. */
export const installationSubject = (id: string) => `installation:${id}`;

/**
 * Pure over (row, signal). An uninstalled installation is final: nothing
 * folded after it reopens it (its id is never reused).
 */
export function evolveInstallation(row: InstallationRow | null, signal: SignalRow): InstallationRow | null {
  const event = systemSignalOf(signal, INSTALLATION_SIGNAL_TYPES);
  if (!event) return row;
  const at = event.recorded_at;
  const touched = { updated_at: at, last_signal_id: event.id };
  if (event.type === 'installation.requested') {
    if (row) return row;
    const requested = event.payload;
    return {
      id: requested.installation_id,
      package: requested.package,
      version: requested.version,
      config: requested.config,
      secrets: requested.secrets,
      status: 'installing',
      pending: { operation: 'install', version: requested.version, attempt: 1 },
      steps: [],
      error: null,
      backfill_from: requested.backfill_from,
      created_by: event.actor,
      created_at: at,
      ...touched,
    };
  }
  if (!row || row.status === 'uninstalled') return row;
  switch (event.type) {
    case 'installation.installed':
      if (row.status !== 'installing' && row.status !== 'failed') return row;
      return { ...row, status: 'installed', pending: null, steps: event.payload.steps, error: null, ...touched };
    case 'installation.failed': {
      const { error, steps } = event.payload;
      // A failed install leaves nothing live; a failed upgrade or uninstall leaves the installation as it was.
      const status = error.operation === 'install' ? 'failed' : row.status;
      return { ...row, status, pending: null, steps, error, ...touched };
    }
    case 'installation.upgrade_requested': {
      const { version, attempt, config, secrets } = event.payload;
      const pending = { operation: 'upgrade' as const, version, attempt, ...(config ? { config } : {}) };
      return { ...row, pending, secrets: secrets ?? row.secrets, error: null, ...touched };
    }
    case 'installation.upgraded': {
      const { version, steps, config } = event.payload;
      return { ...row, version, config: config ?? row.config, pending: null, steps, error: null, ...touched };
    }
    case 'installation.configured':
      return { ...row, config: event.payload.config, secrets: event.payload.secrets, ...touched };
    case 'installation.disabled':
      return row.status === 'installed' ? { ...row, status: 'disabled', ...touched } : row;
    case 'installation.enabled':
      return row.status === 'disabled' ? { ...row, status: 'installed', ...touched } : row;
    case 'installation.uninstall_requested':
      return { ...row, pending: { operation: 'uninstall', version: row.version, attempt: event.payload.attempt }, error: null, ...touched };
    case 'installation.uninstalled':
      return { ...row, status: 'uninstalled', pending: null, steps: event.payload.steps, error: null, ...touched };
    case 'installation.retry_requested': {
      const { operation, version, attempt, config } = event.payload;
      const status = operation === 'install' ? 'installing' : row.status;
      return { ...row, status, pending: { operation, version, attempt, ...(config ? { config } : {}) }, error: null, ...touched };
    }
    default:
      return row;
  }
}
