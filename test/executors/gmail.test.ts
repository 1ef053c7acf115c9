/**
 * The `gmail.*` executor end to end: directives proposed, executed by a
 * running worker through the real `googleapis` client against a fake Gmail
 * and Google token endpoint on loopback. Gmail cannot deduplicate a send, so
 * a send is found again instead: after a worker died mid-call, or after a
 * retry of a call whose answer was lost, the mailbox is searched for the
 * directive's Message-ID and exactly one message exists. Access tokens are
 * refreshed once per credential however many sends want one; a revoked grant
 * or a refused token asks for re-authorization; Retry-After is honoured; and
 * no token or secret leaves the vault except toward Google.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import { executeDirective } from '../../src/directives/execute.ts';
import { simulateDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import { createGmailExecutor, type GmailExecutorOptions } from '../../src/executors/gmail/index.ts';
import { createExecutorRegistry, type ExecuteRequest, type ExecuteResult } from '../../src/executors/registry.ts';
import type { ExecutionFailed } from '../../src/executions/model.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { startGmailFake, type GmailFake } from '../fakes/gmail.ts';
import { directRequest, executionSignals, finishedDirective, proposeApproved, proposeAs } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const OPERATOR: Actor = { type: 'human', id: 'ops@gmail.test' };
const CLIENT_ID = 'signalbus-test.apps.googleusercontent.com';
/** Canaries: searched for in logs, signals and rows at the end. */
const CLIENT_SECRET = `GOCSPX-canary${randomBytes(12).toString('hex')}`;
const REFRESH_TOKEN = `1//canary-refresh-${randomBytes(16).toString('hex')}`;
const BURST_REFRESH_TOKEN = `1//canary-burst-${randomBytes(16).toString('hex')}`;
const credential = (refreshToken: string) => JSON.stringify({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, refresh_token: refreshToken });

let fake: GmailFake;
let t: TestApp;
/** The main org: a valid credential. */
let org: Tenant;
/** Its refresh token was revoked at Google. */
let revoked: Tenant;
/** A valid credential of its own, never used before its burst. */
let burst: Tenant;

beforeAll(async () => {
  fake = await startGmailFake({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, refreshTokens: [REFRESH_TOKEN, BURST_REFRESH_TOKEN] });
  t = await createTestApp({
    env: { SIGNALBUS_GOOGLE_API_BASE: fake.url, SIGNALBUS_GOOGLE_OAUTH_BASE: fake.url, SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '20' },
  });
  org = await t.createOrg('gmail_exec');
  revoked = await t.createOrg('gmail_revoked');
  burst = await t.createOrg('gmail_burst');
  for (const tenant of [org, revoked, burst]) {
    await setPolicy(t, tenant, { rules: [{ id: 'allow-gmail', match: 'gmail.*', effect: 'allow' }] });
  }
  await putSecret(t.app.deps.vault, { tenant: org, name: 'gmail_oauth', input: { value: credential(REFRESH_TOKEN) } });
  await putSecret(t.app.deps.vault, { tenant: revoked, name: 'gmail_oauth', input: { value: credential(`1//revoked-${randomBytes(8).toString('hex')}`) } });
  await putSecret(t.app.deps.vault, { tenant: burst, name: 'gmail_oauth', input: { value: credential(BURST_REFRESH_TOKEN) } });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

const propose = async (kind: string, params: Record<string, unknown>, tenant = org) => (await proposeApproved(t, { tenant, actor: OPERATOR }, { kind, params })).id;
const finished = (id: string, tenant = org) => finishedDirective(t, tenant, id);
const run = async (kind: string, params: Record<string, unknown>, tenant = org) => finished(await propose(kind, params, tenant), tenant);
const messageOf = (directiveId: string) => [...fake.messages.values()].find((message) => message.directiveId === directiveId);
const mail = (n: number, extra: Record<string, unknown> = {}) => ({ to: `reader${n}@example.com`, subject: `Note ${n}`, text: `Body ${n}`, ...extra });

const failures = (directiveId: string, tenant = org) => executionSignals<ExecutionFailed>(t, tenant, 'execution.failed', directiveId);

/** A request as the core builds it, for calling the executor directly. */
const request = (kind: string, params: Record<string, unknown>, over: Partial<ExecuteRequest<any>> = {}): ExecuteRequest<any> =>
  directRequest({
    directiveId: `dir_direct${randomBytes(8).toString('hex')}`,
    kind,
    params,
    idempotencyKey: 'unused',
    orgId: `org_direct${randomBytes(4).toString('hex')}`,
    secrets: { gmail_oauth: credential(REFRESH_TOKEN) },
    ...over,
  });

const direct = (options: GmailExecutorOptions = {}) => createGmailExecutor({ apiBase: fake.url, oauthBase: fake.url, ...options });

// Runs before any worker starts: the directive's own execute job waits in the
// queue meanwhile, and finds the directive finished when the worker comes.
describe('a send whose worker died after Gmail accepted it', () => {
  it('is found by its Message-ID on the next run and recorded once, not sent again', async () => {
    const gmail = createGmailExecutor({ apiBase: fake.url, oauthBase: fake.url });
    let crashed = false;
    // The worker "dies" once the provider call has returned: the claim is
    // committed, the outcome never recorded.
    const dying = {
      ...gmail,
      async execute(req: ExecuteRequest<any>): Promise<ExecuteResult> {
        await gmail.execute(req);
        crashed = true;
        return new Promise<ExecuteResult>(() => {});
      },
    };
    const deps = t.app.deps.bus.directives;
    const id = await propose('gmail.send', mail(1));
    void executeDirective({ ...deps, executors: createExecutorRegistry([dying]) }, { tenant: org, directiveId: id, traceparent: null });
    await waitFor(() => crashed, 10_000, 'the first attempt to send');
    expect(fake.sentCount(`<${id}@signalbus>`)).toBe(1);
    expect(await getDirective(t.app.deps.sql, org, id)).toMatchObject({ status: 'executing', attempts: 1 });

    const sendsBefore = fake.calledCount('messages.send');
    await executeDirective(deps, { tenant: org, directiveId: id, traceparent: null });
    const directive = await getDirective(t.app.deps.sql, org, id);
    const sent = messageOf(id)!;
    expect(directive).toMatchObject({
      status: 'succeeded',
      attempts: 2,
      result: { message_id: sent.id, thread_id: sent.threadId, rfc822_message_id: `<${id}@signalbus>`, label_ids: ['SENT'], recovered: true },
    });
    expect(fake.calledCount('messages.send')).toBe(sendsBefore);
    expect(fake.sentCount(`<${id}@signalbus>`)).toBe(1);
  });
});

describe('through a worker', () => {
  beforeAll(async () => {
    await t.startWorker({ pollIntervalMs: 50 });
  });

  it('gmail.send sends one message whose Message-ID derives from the directive id', async () => {
    const params = {
      to: ['Ada Lovelace <ada@example.com>', 'bob@example.com'],
      cc: 'carol@example.com',
      bcc: ['dan@example.com'],
      from: 'Signalbus Ops <ops@example.com>',
      subject: 'Größe — weekly report',
      text: 'Plain body',
      html: '<p>Rich body</p>',
    };
    const directive = await run('gmail.send', params);
    const sent = messageOf(directive.id)!;
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 1, error: null });
    expect(directive.result).toEqual({ message_id: sent.id, thread_id: sent.threadId, rfc822_message_id: `<${directive.id}@signalbus>`, label_ids: ['SENT'] });
    expect(sent).toMatchObject({
      rfc822MessageId: `<${directive.id}@signalbus>`,
      directiveId: directive.id,
      to: ['ada@example.com', 'bob@example.com'],
      cc: ['carol@example.com'],
      bcc: ['dan@example.com'],
      from: '"Signalbus Ops" <ops@example.com>',
      subject: 'Größe — weekly report',
    });
    expect(sent.source).toContain(Buffer.from('<p>Rich body</p>').toString('base64'));
    expect(fake.sentCount(`<${directive.id}@signalbus>`)).toBe(1);
    // The summary names the message; the body stays in the mailbox.
    expect(JSON.stringify(directive.result)).not.toContain('body');
  });

  it('gmail.send replies in a thread', async () => {
    const first = await run('gmail.send', mail(2));
    const reply = await run('gmail.send', mail(3, { thread_id: (first.result as { thread_id: string }).thread_id, in_reply_to: `<${first.id}@signalbus>` }));
    expect(reply).toMatchObject({ status: 'succeeded', result: { thread_id: (first.result as { thread_id: string }).thread_id } });
    expect(messageOf(reply.id)).toMatchObject({ threadId: messageOf(first.id)!.threadId, inReplyTo: `<${first.id}@signalbus>` });
  });

  it('gmail.draft.create creates a draft and sends nothing', async () => {
    const directive = await run('gmail.draft.create', mail(4, { html: '<b>draft</b>' }));
    const draft = [...fake.drafts.values()].find((candidate) => candidate.messageId === messageOf(directive.id)?.id)!;
    expect(directive).toMatchObject({
      status: 'succeeded',
      attempts: 1,
      result: { draft_id: draft.id, message_id: draft.messageId, rfc822_message_id: `<${directive.id}@signalbus>`, label_ids: ['DRAFT'] },
    });
    expect(fake.sentCount(`<${directive.id}@signalbus>`)).toBe(0);
  });

  it('gmail.labels.modify adds and removes labels', async () => {
    const inbox = fake.seedMessage({ labelIds: ['INBOX', 'UNREAD'] });
    const directive = await run('gmail.labels.modify', { message_id: inbox.id, add_label_ids: ['STARRED', 'Label_7'], remove_label_ids: ['UNREAD'] });
    expect(directive).toMatchObject({ status: 'succeeded', result: { message_id: inbox.id, thread_id: inbox.threadId, label_ids: ['INBOX', 'STARRED', 'Label_7'] } });
    expect(fake.messages.get(inbox.id)!.labelIds).toEqual(['INBOX', 'STARRED', 'Label_7']);
  });

  it('a send whose answer was lost is found on the retry, not sent again', async () => {
    fake.failNext('drop_after_effect', { on: 'messages.send' });
    const sendsBefore = fake.calledCount('messages.send');
    const directive = await run('gmail.send', mail(5));
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2, result: { message_id: messageOf(directive.id)!.id, recovered: true } });
    expect(fake.sentCount(`<${directive.id}@signalbus>`)).toBe(1);
    expect(fake.calledCount('messages.send') - sendsBefore).toBe(1);
    expect(await failures(directive.id)).toMatchObject([{ attempt: 1, final: false, error: { code: 'network_error' } }]);
  });

  it('a draft whose answer was lost is found on the retry, not created again', async () => {
    fake.failNext('drop_after_effect', { on: 'drafts.create' });
    const directive = await run('gmail.draft.create', mail(6));
    const drafts = [...fake.drafts.values()].filter((draft) => fake.messages.get(draft.messageId)?.directiveId === directive.id);
    expect(drafts).toHaveLength(1);
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2, result: { draft_id: drafts[0]!.id, recovered: true } });
  });

  it('a 500 is retried by the core, not by the client: one call per attempt', async () => {
    fake.failNext('server_error', { on: 'messages.send' });
    const sendsBefore = fake.calledCount('messages.send');
    const directive = await run('gmail.send', mail(7));
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(directive.result).not.toHaveProperty('recovered');
    expect(fake.calledCount('messages.send') - sendsBefore).toBe(2);
    expect(fake.sentCount(`<${directive.id}@signalbus>`)).toBe(1);
  });

  it('a 429 is retried after its Retry-After', async () => {
    fake.failNext('rate_limit', { on: 'messages.send', retryAfterSeconds: 1 });
    const directive = await run('gmail.send', mail(8));
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const [failure] = await failures(directive.id);
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'rate_limited' } });
    expect(new Date(failure!.retry_at!).getTime() - new Date(failure!.finished_at).getTime()).toBeGreaterThanOrEqual(1000);
    const sends = fake.calls.filter((call) => call.endpoint === 'messages.send').slice(-2);
    expect(sends.map((call) => call.status)).toEqual([429, 200]);
    expect(sends[1]!.at - sends[0]!.at).toBeGreaterThanOrEqual(1000);
  });

  it('a 400 fails the directive at once with Gmail\'s reason, after one call', async () => {
    fake.failNext('bad_request', { on: 'messages.send' });
    const sendsBefore = fake.calledCount('messages.send');
    const directive = await run('gmail.send', mail(9));
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalidArgument', message: 'Invalid To header' } });
    expect(fake.calledCount('messages.send') - sendsBefore).toBe(1);
    const unknownLabel = await run('gmail.labels.modify', { message_id: fake.seedMessage().id, add_label_ids: ['Label_x'] });
    expect(unknownLabel).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalidArgument', message: 'Invalid label: Label_x' } });
  });

  it('a revoked grant fails as needs_reauthorization and asks for the credential to be renewed', async () => {
    const refreshesBefore = fake.refreshes;
    const directive = await run('gmail.send', mail(10), revoked);
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'needs_reauthorization' } });
    expect(directive.error!.message).toMatch(/revoked or has expired/);
    expect(fake.refreshes).toBe(refreshesBefore);
    const sql = t.app.deps.sql;
    const notices = await sql<{ subject: string; payload: Record<string, unknown> }[]>`
      select subject, payload from ${sql(`${revoked.schema}.signals`)}
       where type = 'secret.reauthorization_required' and payload->>'directive_id' = ${directive.id}`;
    expect(notices).toEqual([
      {
        subject: 'secret:org/gmail_oauth',
        payload: { name: 'gmail_oauth', owner: 'org', directive_id: directive.id, kind: 'gmail.send', error: { code: 'invalid_grant', message: directive.error!.message } },
      },
    ]);
  });

  it('a token Gmail refuses is refreshed once; refused again, the account needs re-authorization', async () => {
    // Google revoked the cached token early: one fresh token, and the send goes through.
    fake.revokeAccessTokens();
    const refreshesBefore = fake.refreshes;
    const healed = await run('gmail.send', mail(11));
    expect(healed).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(fake.refreshes - refreshesBefore).toBe(1);

    fake.failNext('unauthorized', { on: 'messages.send', times: 2 });
    const refused = await run('gmail.send', mail(12));
    expect(refused).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'needs_reauthorization' } });
    expect(fake.sentCount(`<${refused.id}@signalbus>`)).toBe(0);
    const [notice] = await t.app.deps.sql<{ payload: { name: string; error: { code: string } } }[]>`
      select payload from ${t.app.deps.sql(`${org.schema}.signals`)}
       where type = 'secret.reauthorization_required' and payload->>'directive_id' = ${refused.id}`;
    expect(notice!.payload).toMatchObject({ name: 'gmail_oauth', error: { code: 'unauthorized' } });
  });

  it('a burst of sends on a cold credential refreshes its token once', async () => {
    const refreshesBefore = fake.refreshes;
    const release = fake.holdTokens();
    let ids: string[];
    try {
      ids = await Promise.all(Array.from({ length: 6 }, (_, n) => propose('gmail.send', mail(100 + n), burst)));
      await waitFor(() => fake.heldTokens === 1, 10_000, 'the refresh to reach the token endpoint');
    } finally {
      release();
    }
    const directives = await Promise.all(ids.map((id) => finished(id, burst)));
    expect(directives.map((directive) => directive.status)).toEqual(ids.map(() => 'succeeded'));
    expect(fake.refreshes - refreshesBefore).toBe(1);
    for (const id of ids) expect(fake.sentCount(`<${id}@signalbus>`)).toBe(1);
  });

  it('params that would inject a header are refused at proposal', async () => {
    for (const params of [mail(13, { subject: 'Hi\r\nBcc: eve@example.com' }), mail(14, { to: 'ada@example.com\nBcc: eve@example.com' })]) {
      const refused = (await proposeAs(t, { tenant: org, actor: OPERATOR }, { kind: 'gmail.send', params }).catch((caught: unknown) => caught)) as DomainError;
      expect(refused).toBeInstanceOf(DomainError);
      expect(refused.code).toBe('validation_failed');
    }
    expect(t.app.deps.bus.directives.executors.require('gmail.send').recipients!('gmail.send', { to: ['Ada <ADA@example.com>'], cc: ['b@example.com'], bcc: ['c@example.com'], subject: 's', text: 't' }))
      .toEqual(['ada@example.com', 'b@example.com', 'c@example.com']);
  });
});

describe("the org's suppression list", () => {
  it('refuses a send to a suppressed recipient, in to, cc or bcc, before Gmail is called', async () => {
    const suppressing = await t.createOrg('gmail_suppress');
    await setPolicy(t, suppressing, {
      rules: [{ id: 'allow-gmail', match: 'gmail.*', effect: 'allow' }],
      guards: { suppressions: { addresses: ['unsubscribed@example.com'], domains: ['bounced.example'] } },
    });
    await putSecret(t.app.deps.vault, { tenant: suppressing, name: 'gmail_oauth', input: { value: credential(REFRESH_TOKEN) } });
    const callsBefore = fake.calls.length;
    for (const params of [
      mail(1, { to: 'Unsubscribed@Example.com' }),
      mail(2, { cc: ['ok@example.com', 'someone@bounced.example'] }),
      mail(3, { bcc: 'Them <unsubscribed@example.com>' }),
    ]) {
      const directive = await proposeAs(t, { tenant: suppressing, actor: OPERATOR }, { kind: 'gmail.send', params });
      expect(directive.status, JSON.stringify(params)).toBe('rejected');
      expect(directive.decision).toMatchObject({ effect: 'deny', rule: 'guard:suppression' });
    }
    expect(fake.calls.length).toBe(callsBefore);
    // Everyone else is still reachable (simulated: nothing is sent).
    const simulated = await simulateDirective(t.app.deps.bus.directives, {
      ctx: { tenant: suppressing, actor: OPERATOR, source: 'api' },
      input: { kind: 'gmail.send', params: mail(4) },
    });
    expect(simulated.decision).toBe('allow');
  });
});

describe('the executor called directly', () => {
  it('shares one token refresh among concurrent executions', async () => {
    const gmail = direct();
    const orgId = `org_concurrent${randomBytes(4).toString('hex')}`;
    let reads = 0;
    const credentials = { get: async () => (reads++, credential(REFRESH_TOKEN)) };
    const refreshesBefore = fake.refreshes;
    const release = fake.holdTokens();
    const runs = Promise.all(Array.from({ length: 8 }, (_, n) => gmail.execute(request('gmail.send', mail(200 + n), { orgId, credentials }))));
    try {
      await waitFor(() => reads === 8 && fake.heldTokens === 1, 10_000, 'every execution to wait for the token');
    } finally {
      release();
    }
    const results = await runs;
    expect(results.map((result) => result.outcome)).toEqual(results.map(() => 'succeeded'));
    expect(fake.refreshes - refreshesBefore).toBe(1);
  });

  it('looks before sending when told the outcome of an earlier attempt is unknown', async () => {
    const gmail = direct();
    const req = request('gmail.send', mail(15), { priorOutcomeUnknown: true });
    const listsBefore = fake.calledCount('messages.list');
    const first = await gmail.execute(req);
    expect(first).toMatchObject({ outcome: 'succeeded', result: { rfc822_message_id: `<${req.directiveId}@signalbus>` } });
    expect((first as { result: object }).result).not.toHaveProperty('recovered');
    expect(fake.calledCount('messages.list') - listsBefore).toBe(1);
    const again = await gmail.execute({ ...req, attempt: 2 });
    expect(again).toMatchObject({ outcome: 'succeeded', result: { message_id: messageOf(req.directiveId)!.id, recovered: true } });
    expect(fake.sentCount(`<${req.directiveId}@signalbus>`)).toBe(1);
  });

  it('a token endpoint failure is one call, retryable; a hang times out as retryable', async () => {
    fake.failNext('server_error', { on: 'token' });
    const tokenCallsBefore = fake.calledCount('token');
    expect(await direct().execute(request('gmail.send', mail(16)))).toMatchObject({ outcome: 'retryable', error: { code: 'token_refresh_unavailable' } });
    expect(fake.calledCount('token') - tokenCallsBefore).toBe(1);

    fake.failNext('hang', { on: 'messages.send' });
    expect(await direct({ timeoutMs: 300 }).execute(request('gmail.send', mail(17)))).toMatchObject({ outcome: 'retryable', error: { code: 'timeout' } });
  });

  it('a missing or malformed credential is a permanent failure naming the secret, not its value', async () => {
    const gmail = direct();
    const withSecret = (value: string | undefined) => ({ credentials: { get: async () => value } });
    expect(await gmail.execute(request('gmail.send', mail(18), withSecret(undefined)))).toEqual({
      outcome: 'permanent', error: { code: 'missing_credential', message: 'the secret gmail_oauth is not set for this installation or its org' },
    });
    const malformed = await gmail.execute(request('gmail.send', mail(19), withSecret(`not json ${REFRESH_TOKEN}`)));
    expect(malformed).toMatchObject({ outcome: 'permanent', error: { code: 'invalid_credential' } });
    const partial = await gmail.execute(request('gmail.send', mail(20), withSecret(JSON.stringify({ client_id: CLIENT_ID, refresh_token: REFRESH_TOKEN }))));
    expect(partial).toMatchObject({ outcome: 'permanent', error: { code: 'invalid_credential', message: 'the secret gmail_oauth lacks a valid client_secret' } });
    expect(JSON.stringify([malformed, partial])).not.toContain(REFRESH_TOKEN);
  });
});

describe('tokens and secrets', () => {
  it('appear in no log line, signal, directive, execution or job', async () => {
    const canaries = [CLIENT_SECRET, REFRESH_TOKEN, BURST_REFRESH_TOKEN, ...fake.issuedTokens];
    expect(fake.issuedTokens.length).toBeGreaterThan(2);
    expect(t.logs.length).toBeGreaterThan(0);
    for (const canary of canaries) expect(t.logs.filter((line) => line.includes(canary))).toEqual([]);
    const sql = t.app.deps.sql;
    for (const tenant of [org, revoked, burst]) {
      for (const table of ['signals', 'directives', 'executions']) {
        const [row] = await sql<{ n: number; total: number }[]>`
          select count(*) filter (where exists (select 1 from unnest(${canaries}::text[]) c where strpos(r::text, c) > 0))::int as n,
                 count(*)::int as total
            from ${sql(`${tenant.schema}.${table}`)} r`;
        expect(row!.n, `${tenant.slug}.${table}`).toBe(0);
        expect(row!.total, `${tenant.slug}.${table}`).toBeGreaterThan(0);
      }
    }
    const [jobs] = await sql<{ n: number }[]>`
      select count(*)::int as n from graphile_worker._private_jobs j
       where exists (select 1 from unnest(${canaries}::text[]) c where strpos(j.payload::text, c) > 0)`;
    expect(jobs!.n).toBe(0);
  });
});
