/**
 * `receiveHook` — one delivery to `/v1/hooks/:installation_id`. The hook has
 * no API key: the installation id finds the org (`public.installation_routes`,
 * cached: a route never changes), the installation must be `installed`, the
 * delivery is charged to the installation's rate limit, its body is read
 * within the size limit and verified as the package's manifest declares
 * with the installation's secrets, then read into an event and appended as
 * a deduplicated signal, its delivery log row in the same transaction. The
 * answer goes out after that commits.
 *
 * Every delivery to a known installation is recorded in its delivery log,
 * whatever the outcome; a rejection writes no signal. A delivery to an id
 * never issued is refused before any tenant is touched, and charged to the
 * sender's address first, so guessing ids costs no lookup past its limit.
 */
import { createHash } from 'node:crypto';
import { DomainError, notFound } from '../core/errors.ts';
import { isId } from '../core/ids.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Sql } from '../db/client.ts';
import { findInstallation, findInstallationOrg } from '../packages/installation-read.ts';
import type { PackageRegistry } from '../packages/registry.ts';
import type { RateLimiter, RateVerdict } from '../ratelimit/index.ts';
import { readSecret, type VaultDeps } from '../secrets/vault.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { TenantDirectory } from '../tenancy/directory.ts';
import type { DeliveryLog, DeliveryOutcome, DeliveryRecord } from './delivery-log.ts';
import type { PubsubVerifier } from './pubsub.ts';
import { readEvent } from './read-event.ts';
import { verifyDelivery } from './verify.ts';

export interface HookDeps {
  sql: Sql;
  emit: EmitDeps;
  tenants: Pick<TenantDirectory, 'find'>;
  vault: VaultDeps;
  packages: Pick<PackageRegistry, 'getVersion'>;
  pubsub: PubsubVerifier;
  deliveries: DeliveryLog;
  limiter?: Pick<RateLimiter, 'forInstallation' | 'forAddress' | 'refundAddress'> | undefined;
  maxBodyBytes: number;
  /**
   * How long an `installed` installation is taken as such without reading it
   * again; 0 reads it for every delivery. Lookups under way are shared either way.
   */
  installationCacheMs: number;
  /** A delivery log write that nobody awaited failed. */
  onError?: (error: unknown) => void;
  /** Counts each delivery's outcome (metrics). */
  observe?: (outcome: DeliveryOutcome, reason: string | null) => void;
  now?: () => number;
}

export interface HookRequest {
  installationId: string;
  /** Lowercased names. */
  headers: Readonly<Record<string, string>>;
  /** The hook's URL as the sender called it: Pub/Sub's default audience. */
  url: string;
  /** The sender's address, charged when the id is not known here. */
  address: string;
  requestId: string;
  traceparent: string | null;
  /** Reads the raw body; throws `payload_too_large` past `maxBytes`. */
  readBody(maxBytes: number): Promise<Buffer>;
}

export type HookAnswer =
  | { accepted: true; signal_id: string | null; deduplicated: boolean }
  | { accepted: false; rateLimited: RateVerdict };

// Installation id → org id. A route never changes once written, so entries never go stale.
const ROUTE_CACHE_LIMIT = 50_000;
const routeCaches = new WeakMap<object, Map<string, string>>();

async function orgOf(deps: HookDeps, request: HookRequest): Promise<string | undefined> {
  let cache = routeCaches.get(deps);
  if (!cache) routeCaches.set(deps, (cache = new Map()));
  const cached = cache.get(request.installationId);
  if (cached) return cached;
  const charge = deps.limiter?.forAddress(request.address);
  if (charge && !charge.allowed) throw new DomainError('rate_limited', `too many requests; retry in ${charge.retryAfterS} s`);
  const orgId = isId('installation', request.installationId) ? await findInstallationOrg(deps, request.installationId) : undefined;
  if (!orgId) return undefined;
  if (charge) deps.limiter?.refundAddress(request.address);
  if (cache.size >= ROUTE_CACHE_LIMIT) cache.clear();
  cache.set(request.installationId, orgId);
  return orgId;
}

type InstallationRow = NonNullable<Awaited<ReturnType<typeof findInstallation>>>;
const INSTALLATION_CACHE_LIMIT = 10_000;
const installationCaches = new WeakMap<object, { live: Map<string, { row: InstallationRow; expiresAt: number }>; reading: Map<string, Promise<InstallationRow | undefined>> }>();

/**
 * The installation's row. Concurrent deliveries share one read; an
 * `installed` row is kept for `installationCacheMs`, so disabling or
 * uninstalling takes that long to close the hook (API keys' revocation works
 * alike). Any other status is read again every time, so re-enabling opens it at once.
 */
function installationOf(deps: HookDeps, tenant: Tenant, id: string, now: number): Promise<InstallationRow | undefined> {
  let caches = installationCaches.get(deps);
  if (!caches) installationCaches.set(deps, (caches = { live: new Map(), reading: new Map() }));
  const { live, reading } = caches;
  const key = `${tenant.schema}/${id}`;
  const cached = live.get(key);
  if (cached && cached.expiresAt > now) return Promise.resolve(cached.row);
  let read = reading.get(key);
  if (!read) {
    read = findInstallation(deps.sql, tenant.schema, id).finally(() => reading.delete(key));
    reading.set(key, read);
    if (deps.installationCacheMs > 0) {
      void read.then((row) => {
        if (live.size >= INSTALLATION_CACHE_LIMIT) live.clear();
        if (row?.status === 'installed') live.set(key, { row, expiresAt: now + deps.installationCacheMs });
        else live.delete(key);
      }, () => {});
    }
  }
  return read;
}

/**
 * The installation's active secrets: the value may list several, separated
 * by whitespace, while a sender rotates. Kept for `SECRET_TTL_MS` per
 * installation and its last change (`last_signal_id`): reconfiguring it takes
 * effect at once, a change to an org-wide secret of the same name within
 * the TTL — as API keys do.
 */
const SECRET_TTL_MS = 5_000;
const SECRET_CACHE_LIMIT = 10_000;
const secretCaches = new WeakMap<object, Map<string, { lastSignal: string; expiresAt: number; secrets: Promise<string[]> }>>();

function secretsOf(deps: HookDeps, tenant: Tenant, installation: { id: string; last_signal_id: string }, name: string, now: number): Promise<string[]> {
  let cache = secretCaches.get(deps);
  if (!cache) secretCaches.set(deps, (cache = new Map()));
  const key = `${tenant.schema}/${installation.id}/${name}`;
  const cached = cache.get(key);
  if (cached && cached.lastSignal === installation.last_signal_id && cached.expiresAt > now) return cached.secrets;
  const secrets = readSecret(deps.vault, { tenant, name, installationId: installation.id }).then((value) => (value ? value.split(/\s+/).filter(Boolean) : []));
  if (cache.size >= SECRET_CACHE_LIMIT) cache.clear();
  cache.set(key, { lastSignal: installation.last_signal_id, expiresAt: now + SECRET_TTL_MS, secrets });
  // A failed read is not kept.
  secrets.catch(() => cache.delete(key));
  return secrets;
}

export async function receiveHook(deps: HookDeps, { input: request }: { input: HookRequest }): Promise<HookAnswer> {
  const receivedAt = (deps.now ?? Date.now)();
  const orgId = await orgOf(deps, request);
  const tenant = orgId ? await deps.tenants.find(orgId) : undefined;
  if (!tenant) {
    deps.observe?.('rejected', 'not_found');
    throw notFound('installation');
  }
  const installationId = request.installationId;
  let body: Buffer | undefined;
  const recordOf = (outcome: DeliveryOutcome, status: number, fields: Partial<DeliveryRecord> = {}): DeliveryRecord => {
    const entry: DeliveryRecord = {
      installationId,
      receivedAt,
      status,
      outcome,
      reason: null,
      detail: null,
      bodySha256: body ? createHash('sha256').update(body).digest('hex') : null,
      bodyBytes: body ? body.length : null,
      eventId: null,
      signalId: null,
      ...fields,
    };
    return entry;
  };
  const finish = (outcome: DeliveryOutcome, status: number, fields: Partial<DeliveryRecord> = {}) => {
    const entry = recordOf(outcome, status, fields);
    deps.observe?.(outcome, entry.reason);
    return deps.deliveries.record(tenant, entry);
  };
  const reject = async (error: DomainError, detail: string = error.message): Promise<never> => {
    await finish('rejected', error.status, { reason: error.code, detail });
    throw error;
  };

  const charged = deps.limiter?.forInstallation(installationId);
  const verdict = charged instanceof Promise ? await charged : charged;
  if (verdict && !verdict.allowed) {
    await finish('rejected', 429, { reason: 'rate_limited', detail: `over the installation's rate; retry in ${verdict.retryAfterS} s` });
    return { accepted: false, rateLimited: verdict };
  }

  const [installation, read] = await Promise.all([
    installationOf(deps, tenant, installationId, receivedAt),
    request.readBody(deps.maxBodyBytes).then(
      (bytes) => ({ bytes }),
      (error: unknown) => ({ error }),
    ),
  ]);
  if (!installation) return reject(notFound('installation'), 'no such installation in this organization');
  if (installation.status !== 'installed') return reject(notFound('installation'), `the installation is ${installation.status}`);
  if ('error' in read) {
    if (read.error instanceof DomainError) return reject(read.error);
    throw read.error;
  }
  body = read.bytes;
  const manifest = deps.packages.getVersion(installation.package, installation.version)?.manifest;
  const spec = manifest?.webhook;
  if (!manifest || !spec) return reject(notFound('installation'), `${installation.package}@${installation.version} declares no webhook`);

  const secrets = spec.scheme === 'google-pubsub' ? [] : await secretsOf(deps, tenant, installation, spec.secret, receivedAt);
  if (spec.scheme !== 'google-pubsub' && secrets.length === 0) {
    return reject(new DomainError('invalid_signature', 'the delivery cannot be verified'), `the installation has no ${spec.secret} secret`);
  }
  let verified;
  try {
    verified = await verifyDelivery(spec, { body, headers: request.headers, receivedAt, url: request.url }, secrets, { pubsub: deps.pubsub });
  } catch (error) {
    if (error instanceof DomainError) return reject(error);
    throw error;
  }

  let event;
  try {
    event = readEvent(spec, { ...verified, headers: request.headers, config: installation.config });
  } catch (error) {
    if (error instanceof DomainError) return reject(error);
    throw error;
  }
  if (!event) {
    await finish('ignored', 200, { reason: 'not_selected', detail: 'webhook.when is false for this delivery' });
    return { accepted: true, signal_id: null, deduplicated: false };
  }
  if (!manifest.signals.some((declared) => declared.type === event.type)) {
    await finish('ignored', 200, { reason: 'undeclared_type', detail: `${event.type} is not a signal type of ${manifest.name}`, eventId: event.id });
    return { accepted: true, signal_id: null, deduplicated: false };
  }

  const ctx: VerbContext = {
    tenant,
    actor: { type: 'integration', id: manifest.name },
    source: `webhook:${manifest.name}`,
    installationId,
    requestId: request.requestId,
    traceparent: request.traceparent,
  };
  const input = {
    type: event.type,
    subject: event.subject,
    payload: event.payload,
    dedupe_key: `${manifest.name}:${event.id}`,
    ...(event.occurredAt ? { occurred_at: event.occurredAt } : {}),
  };
  // The log's row is the signal's side row: it commits with the signal (in
  // its group commit), so an accepted delivery costs no commit of its own and
  // the answer, after that commit, finds both written.
  let logged: DeliveryRecord | undefined;
  let result;
  try {
    result = await emit(deps.emit, {
      ctx,
      input,
      side: {
        row(emitted) {
          // None for a key held by another request: that delivery is logged as rejected below.
          if (!emitted) return undefined;
          logged = recordOf(emitted.deduplicated ? 'deduplicated' : 'accepted', 200, { eventId: event.id, signalId: emitted.signal.id });
          return logged;
        },
        write: deps.deliveries.writer(tenant),
      },
    });
  } catch (error) {
    if (error instanceof DomainError) {
      await finish('rejected', error.status, { reason: error.code, detail: error.message, eventId: event.id });
    }
    throw error;
  }
  deps.observe?.(result.deduplicated ? 'deduplicated' : 'accepted', null);
  if (logged) deps.deliveries.written(tenant, logged, deps.onError);
  return { accepted: true, signal_id: result.signal.id, deduplicated: result.deduplicated };
}
