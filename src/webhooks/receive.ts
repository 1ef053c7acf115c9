/**
 * `receiveHook` — one delivery to `/v1/hooks/:installation_id`. The hook has
 * no API key: the installation id finds the org (`public.installation_routes`,
 * cached: a route never changes), the installation must be `installed`, the
 * delivery is charged to the installation's rate limit, its body is read
 * within the size limit and verified as the package's manifest declares
 * with the installation's secrets, then read into an event and appended as
 * a deduplicated signal. The answer goes out after the signal commits.
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

/** The installation's active secrets: the value may list several, separated by whitespace, while a sender rotates. */
async function secretsOf(deps: HookDeps, tenant: Tenant, installationId: string, name: string): Promise<string[]> {
  const value = await readSecret(deps.vault, { tenant, name, installationId });
  return value ? value.split(/\s+/).filter(Boolean) : [];
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
  const finish = async (outcome: DeliveryOutcome, status: number, fields: Partial<DeliveryRecord> = {}) => {
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
    deps.observe?.(outcome, entry.reason);
    await deps.deliveries.record(tenant, entry);
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
    findInstallation(deps.sql, tenant.schema, installationId),
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

  const secrets = spec.scheme === 'google-pubsub' ? [] : await secretsOf(deps, tenant, installationId, spec.secret);
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
  let result;
  try {
    result = await emit(deps.emit, { ctx, input });
  } catch (error) {
    if (error instanceof DomainError) {
      await finish('rejected', error.status, { reason: error.code, detail: error.message, eventId: event.id });
    }
    throw error;
  }
  await finish(result.deduplicated ? 'deduplicated' : 'accepted', 200, { eventId: event.id, signalId: result.signal.id });
  return { accepted: true, signal_id: result.signal.id, deduplicated: result.deduplicated };
}
