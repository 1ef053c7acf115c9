/**
 * A fake Gmail API and Google OAuth token endpoint on loopback, for the real
 * `googleapis` client: `POST /token` (form-encoded `grant_type=refresh_token`)
 * issues short-lived access tokens for the refresh tokens it knows, and the
 * Gmail paths under the API root (`/gmail/v1/users/me/…`) check the Bearer
 * token and answer in Google's JSON shapes, errors included.
 *
 * It parses each raw message it is given (Message-ID, recipients, subject, the
 * `X-Signalbus-Directive` header), keeps messages and drafts so that
 * `rfc822msgid:` searches, gets and label changes see them, counts every call
 * and every effect, and fails on demand. No vitest here: `npm run fakes`
 * serves it for demos.
 */
import { randomBytes } from 'node:crypto';
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { createGate, createHangs, serveOnLoopback } from './loopback.ts';

export type GmailFailure =
  /** 500 `backendError`, before anything happens. */
  | 'server_error'
  /** 429 `rateLimitExceeded` with `Retry-After`. */
  | 'rate_limit'
  /** Never answers: until the client gives up or the fake closes. */
  | 'hang'
  /** Token endpoint: 400 `invalid_grant`, as for a revoked refresh token. */
  | 'invalid_grant'
  /** Gmail API: 401 `authError`, whatever the token. */
  | 'unauthorized'
  /** Gmail API: 400 `invalidArgument`, before anything happens. */
  | 'bad_request'
  /** Sends the message (or creates the draft), then resets the connection without answering. */
  | 'drop_after_effect';

export type GmailEndpoint = 'token' | 'messages.send' | 'messages.list' | 'messages.get' | 'messages.modify' | 'drafts.create' | 'drafts.list';

/** Where a queued failure strikes: one endpoint, any Gmail API call, or any call that has an effect. */
export type GmailFailureTarget = GmailEndpoint | 'api' | 'effect';

export interface GmailCall {
  endpoint: GmailEndpoint | 'unknown';
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  failure: GmailFailure | null;
  at: number;
}

export interface FakeMessage {
  id: string;
  threadId: string;
  labelIds: string[];
  /** With its angle brackets, as in the header. */
  rfc822MessageId: string | null;
  directiveId: string | null;
  from: string | null;
  subject: string | null;
  to: string[];
  cc: string[];
  bcc: string[];
  inReplyTo: string | null;
  /** Decoded headers, in order, folded lines joined. */
  headers: { name: string; value: string }[];
  /** The raw source as received, decoded from base64url. */
  source: string;
}

export interface FakeDraft {
  id: string;
  messageId: string;
}

export interface GmailEffect {
  type: 'message.sent' | 'draft.created' | 'labels.modified';
  id: string;
  rfc822MessageId: string | null;
}

export interface GmailFake {
  url: string;
  /** Every request, in arrival order. */
  calls: GmailCall[];
  effects: GmailEffect[];
  messages: Map<string, FakeMessage>;
  drafts: Map<string, FakeDraft>;
  /** Access tokens issued so far (to check they leak nowhere). */
  issuedTokens: string[];
  /** Successful refreshes at the token endpoint. */
  readonly refreshes: number;
  /** Messages sent with this Message-ID (with or without angle brackets). */
  sentCount(rfc822MessageId: string): number;
  calledCount(endpoint: GmailEndpoint): number;
  /** Queues a failure for the next matching request(s), after any already queued. */
  failNext(mode: GmailFailure, options?: { times?: number; retryAfterSeconds?: number; on?: GmailFailureTarget }): void;
  /** Holds token requests arriving from now on until the returned release is called. */
  holdTokens(): () => void;
  /** Token requests waiting on `holdTokens`. */
  readonly heldTokens: number;
  /** Refresh tokens the token endpoint accepts (client id and secret must match too). */
  setRefreshTokens(tokens: string[]): void;
  /** Makes every access token issued so far invalid, as Google may before their expiry. */
  revokeAccessTokens(): void;
  /** A message already in the mailbox (an inbox message to label, say). */
  seedMessage(message?: Partial<Pick<FakeMessage, 'labelIds' | 'subject' | 'from' | 'threadId'>>): FakeMessage;
  reset(): void;
  close(): Promise<void>;
}

export interface GmailFakeOptions {
  port?: number;
  clientId?: string;
  clientSecret?: string;
  refreshTokens?: string[];
  /** Lifetime of issued access tokens. */
  expiresInSeconds?: number;
}

type Env = { Bindings: HttpBindings };

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const SYSTEM_LABELS = new Set(['INBOX', 'SPAM', 'TRASH', 'UNREAD', 'STARRED', 'IMPORTANT', 'SENT', 'DRAFT', 'CHAT',
  'CATEGORY_PERSONAL', 'CATEGORY_SOCIAL', 'CATEGORY_PROMOTIONS', 'CATEGORY_UPDATES', 'CATEGORY_FORUMS']);
const isKnownLabel = (label: string) => SYSTEM_LABELS.has(label) || /^Label_\d+$/.test(label);

const STATUS_OF_CODE: Record<number, string> = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 404: 'NOT_FOUND', 429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL' };

/** Google's error body. */
function googleError(code: number, reason: string, message: string, headers?: Record<string, string>): Answer {
  return {
    status: code,
    body: { error: { code, message, errors: [{ message, domain: 'global', reason }], status: STATUS_OF_CODE[code] ?? 'UNKNOWN' } },
    ...(headers ? { headers } : {}),
  };
}

const notFound = () => googleError(404, 'notFound', 'Requested entity was not found.');

/** RFC 2047 B and Q encoded-words, UTF-8 or not; whitespace between adjacent words dropped. */
function decodeWords(value: string): string {
  return value
    .replace(/(=\?[^?]+\?[BbQq]\?[^?]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_word, _charset: string, encoding: string, text: string) =>
      encoding.toUpperCase() === 'B'
        ? Buffer.from(text, 'base64').toString('utf8')
        : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8'));
}

/** The bare addresses of an address-list header. */
function addressesOf(value: string | undefined): string[] {
  if (!value) return [];
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (const char of value) {
    if (char === '"') quoted = !quoted;
    if (char === ',' && !quoted) {
      parts.push(current);
      current = '';
    } else current += char;
  }
  parts.push(current);
  return parts
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => (/<([^<>]+)>\s*$/.exec(part)?.[1] ?? part).trim().toLowerCase());
}

function parseSource(source: string) {
  const end = source.search(/\r?\n\r?\n/);
  const block = (end === -1 ? source : source.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const headers = block
    .split(/\r?\n/)
    .map((line) => /^([!-9;-~]+):\s?(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ name: match[1]!, value: decodeWords(match[2]!) }));
  const first = (name: string) => headers.find((header) => header.name.toLowerCase() === name.toLowerCase())?.value;
  return {
    headers,
    rfc822MessageId: first('Message-ID')?.trim() ?? null,
    directiveId: first('X-Signalbus-Directive')?.trim() ?? null,
    from: first('From') ?? null,
    subject: first('Subject') ?? null,
    inReplyTo: first('In-Reply-To')?.trim() ?? null,
    to: addressesOf(first('To')),
    cc: addressesOf(first('Cc')),
    bcc: addressesOf(first('Bcc')),
  };
}

const bare = (messageId: string) => messageId.trim().replace(/^<|>$/g, '').toLowerCase();

/** The `rfc822msgid:` term of a search, the only operator the fake understands. */
function searchedMessageId(q: string | undefined): string | null {
  const match = /(?:^|\s)rfc822msgid:(\S+)/i.exec(q ?? '');
  return match ? bare(match[1]!) : null;
}

const ENDPOINTS: [GmailEndpoint, string, RegExp][] = [
  ['token', 'POST', /^\/token$/],
  ['messages.send', 'POST', /^\/gmail\/v1\/users\/([^/]+)\/messages\/send$/],
  ['messages.modify', 'POST', /^\/gmail\/v1\/users\/([^/]+)\/messages\/([^/]+)\/modify$/],
  ['messages.list', 'GET', /^\/gmail\/v1\/users\/([^/]+)\/messages$/],
  ['messages.get', 'GET', /^\/gmail\/v1\/users\/([^/]+)\/messages\/([^/]+)$/],
  ['drafts.create', 'POST', /^\/gmail\/v1\/users\/([^/]+)\/drafts$/],
  ['drafts.list', 'GET', /^\/gmail\/v1\/users\/([^/]+)\/drafts$/],
];

const targets = (target: GmailFailureTarget, endpoint: GmailEndpoint) =>
  target === endpoint ||
  (target === 'api' && endpoint !== 'token') ||
  (target === 'effect' && (endpoint === 'messages.send' || endpoint === 'drafts.create' || endpoint === 'messages.modify'));

const defaultTarget = (mode: GmailFailure): GmailFailureTarget => (mode === 'invalid_grant' ? 'token' : mode === 'drop_after_effect' ? 'effect' : 'api');

export async function startGmailFake(options: GmailFakeOptions = {}): Promise<GmailFake> {
  const clientId = options.clientId ?? 'fake-client-id.apps.googleusercontent.com';
  const clientSecret = options.clientSecret ?? 'fake-client-secret';
  const expiresInSeconds = options.expiresInSeconds ?? 3599;
  let refreshTokens = new Set(options.refreshTokens ?? ['fake-refresh-token']);
  const accessTokens = new Map<string, number>();
  const calls: GmailCall[] = [];
  const effects: GmailEffect[] = [];
  const messages = new Map<string, FakeMessage>();
  const drafts = new Map<string, FakeDraft>();
  const issuedTokens: string[] = [];
  const failures: { mode: GmailFailure; retryAfterSeconds: number; on: GmailFailureTarget }[] = [];
  const hangs = createHangs();
  const tokenGate = createGate();
  let refreshes = 0;
  let sequence = 0;

  // Gmail ids are 16 hex digits; a sequence keeps them ordered and unique.
  const newGmailId = () => (0x18f0000000000000n + BigInt(++sequence)).toString(16);

  /** Holds a request open until the client leaves or the fake closes. */
  const hang = (c: Context<Env>) => hangs.hang(c.env.outgoing);

  function takeFailure(endpoint: GmailEndpoint) {
    const index = failures.findIndex((failure) => targets(failure.on, endpoint));
    return index === -1 ? null : failures.splice(index, 1)[0]!;
  }

  function store(raw: unknown, threadId: unknown, labelIds: string[]): FakeMessage | Answer {
    if (typeof raw !== 'string' || raw === '') return googleError(400, 'invalidArgument', "'raw' RFC822 payload message string or uploading message via /upload/* URL required");
    const source = Buffer.from(raw, 'base64').toString('utf8');
    const parsed = parseSource(source);
    if (labelIds.includes('SENT') && parsed.to.length + parsed.cc.length + parsed.bcc.length === 0) {
      return googleError(400, 'invalidArgument', 'Recipient address required');
    }
    let thread: string | undefined;
    if (typeof threadId === 'string' && threadId !== '') {
      if (![...messages.values()].some((message) => message.threadId === threadId)) return notFound();
      thread = threadId;
    }
    const id = newGmailId();
    const message: FakeMessage = { id, threadId: thread ?? id, labelIds, source, ...parsed };
    messages.set(id, message);
    return message;
  }

  const messageResource = (message: FakeMessage, metadataHeaders?: string[]) => ({
    id: message.id,
    threadId: message.threadId,
    labelIds: message.labelIds,
    ...(metadataHeaders
      ? { payload: { headers: message.headers.filter((header) => metadataHeaders.length === 0 || metadataHeaders.some((name) => name.toLowerCase() === header.name.toLowerCase())) } }
      : {}),
  });

  const matching = (q: string | undefined) => {
    const wanted = searchedMessageId(q);
    return [...messages.values()].filter((message) => wanted === null || (message.rfc822MessageId !== null && bare(message.rfc822MessageId) === wanted));
  };

  async function token(c: Context<Env>, failure: GmailFailure | null): Promise<Answer> {
    await tokenGate.pass();
    const form = new URLSearchParams(await c.req.text());
    if (failure === 'invalid_grant') return { status: 400, body: { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' } };
    if (form.get('grant_type') !== 'refresh_token') return { status: 400, body: { error: 'unsupported_grant_type', error_description: 'Invalid grant_type.' } };
    if (form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret) {
      return { status: 401, body: { error: 'invalid_client', error_description: 'Unauthorized' } };
    }
    if (!refreshTokens.has(form.get('refresh_token') ?? '')) return { status: 400, body: { error: 'invalid_grant', error_description: 'Bad Request' } };
    const accessToken = `ya29.fake-${randomBytes(18).toString('base64url')}`;
    accessTokens.set(accessToken, Date.now() + expiresInSeconds * 1000);
    issuedTokens.push(accessToken);
    refreshes++;
    return {
      status: 200,
      body: { access_token: accessToken, expires_in: expiresInSeconds, scope: 'https://www.googleapis.com/auth/gmail.modify', token_type: 'Bearer' },
    };
  }

  async function gmail(c: Context<Env>, endpoint: GmailEndpoint, match: RegExpExecArray): Promise<Answer> {
    const bearer = /^Bearer (.+)$/.exec(c.req.header('authorization') ?? '')?.[1];
    const expiresAt = bearer ? accessTokens.get(bearer) : undefined;
    if (expiresAt === undefined || expiresAt <= Date.now()) {
      return googleError(401, 'authError', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.', {
        'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"',
      });
    }
    if (match[1] !== 'me') return googleError(403, 'forbidden', 'Delegation denied');
    const url = new URL(c.req.url);
    const body = c.req.method === 'POST' ? ((await c.req.json().catch(() => ({}))) as Record<string, any>) : {};
    switch (endpoint) {
      case 'messages.send': {
        const stored = store(body.raw, body.threadId, ['SENT']);
        if ('status' in stored) return stored;
        effects.push({ type: 'message.sent', id: stored.id, rfc822MessageId: stored.rfc822MessageId });
        return { status: 200, body: messageResource(stored) };
      }
      case 'drafts.create': {
        const stored = store(body.message?.raw, body.message?.threadId, ['DRAFT']);
        if ('status' in stored) return stored;
        const draft = { id: `r${newGmailId()}`, messageId: stored.id };
        drafts.set(draft.id, draft);
        effects.push({ type: 'draft.created', id: draft.id, rfc822MessageId: stored.rfc822MessageId });
        return { status: 200, body: { id: draft.id, message: messageResource(stored) } };
      }
      case 'messages.modify': {
        const message = messages.get(match[2]!);
        if (!message) return notFound();
        const add: string[] = body.addLabelIds ?? [];
        const remove: string[] = body.removeLabelIds ?? [];
        const invalid = [...add, ...remove].find((label) => !isKnownLabel(label));
        if (invalid) return googleError(400, 'invalidArgument', `Invalid label: ${invalid}`);
        message.labelIds = [...new Set([...message.labelIds.filter((label) => !remove.includes(label)), ...add])];
        effects.push({ type: 'labels.modified', id: message.id, rfc822MessageId: message.rfc822MessageId });
        return { status: 200, body: messageResource(message) };
      }
      case 'messages.list': {
        const found = matching(url.searchParams.get('q') ?? undefined);
        return { status: 200, body: found.length ? { messages: found.map(({ id, threadId }) => ({ id, threadId })), resultSizeEstimate: found.length } : { resultSizeEstimate: 0 } };
      }
      case 'messages.get': {
        const message = messages.get(match[2]!);
        if (!message) return notFound();
        const format = url.searchParams.get('format');
        return { status: 200, body: messageResource(message, format === 'metadata' ? url.searchParams.getAll('metadataHeaders') : undefined) };
      }
      case 'drafts.list': {
        const found = new Set(matching(url.searchParams.get('q') ?? undefined).map((message) => message.id));
        const list = [...drafts.values()].filter((draft) => found.has(draft.messageId));
        const resource = (draft: FakeDraft) => ({ id: draft.id, message: { id: draft.messageId, threadId: messages.get(draft.messageId)!.threadId } });
        return { status: 200, body: list.length ? { drafts: list.map(resource), resultSizeEstimate: list.length } : { resultSizeEstimate: 0 } };
      }
      case 'token':
        throw new Error('unreachable');
    }
  }

  const app = new Hono<Env>();
  app.all('*', async (c) => {
    const url = new URL(c.req.url);
    let found: [GmailEndpoint, RegExpExecArray] | undefined;
    for (const [endpoint, method, pattern] of ENDPOINTS) {
      const match = pattern.exec(c.req.path);
      if (match && method === c.req.method) {
        found = [endpoint, match];
        break;
      }
    }
    const call: GmailCall = {
      endpoint: found?.[0] ?? 'unknown', method: c.req.method, path: c.req.path,
      query: Object.fromEntries(url.searchParams), status: 0, failure: null, at: Date.now(),
    };
    calls.push(call);
    const answer = ({ status, body, headers }: Answer) => {
      call.status = status;
      return c.json(body as object, status as 200, headers);
    };
    if (!found) return answer(notFound());
    const [endpoint, match] = found;
    const failure = takeFailure(endpoint);
    call.failure = failure?.mode ?? null;

    if (failure?.mode === 'hang') {
      call.status = -1;
      await hang(c);
      return c.body(null, 500);
    }
    if (failure?.mode === 'server_error') {
      return answer(endpoint === 'token'
        ? { status: 500, body: { error: 'internal_failure', error_description: 'Backend Error' } }
        : googleError(500, 'backendError', 'Backend Error'));
    }
    if (failure?.mode === 'rate_limit') {
      const headers = { 'retry-after': String(failure.retryAfterSeconds) };
      return answer(endpoint === 'token'
        ? { status: 429, body: { error: 'rate_limit_exceeded', error_description: 'Rate limit exceeded' }, headers }
        : googleError(429, 'rateLimitExceeded', 'Too many concurrent requests for user.', headers));
    }
    if (endpoint === 'token') return answer(await token(c, failure?.mode ?? null));
    if (failure?.mode === 'unauthorized') return answer(googleError(401, 'authError', 'Invalid Credentials'));
    if (failure?.mode === 'bad_request') return answer(googleError(400, 'invalidArgument', 'Invalid To header'));

    const result = await gmail(c, endpoint, match);
    if (failure?.mode === 'drop_after_effect') {
      call.status = -1;
      // Done and never told: the client sees a reset connection.
      c.env.incoming.socket.destroy();
      await hang(c);
      return c.body(null, 500);
    }
    return answer(result);
  });

  const loopback = await serveOnLoopback(app, { port: options.port ?? 0 });

  const fake: GmailFake = {
    url: loopback.url,
    calls,
    effects,
    messages,
    drafts,
    issuedTokens,
    get refreshes() {
      return refreshes;
    },
    sentCount(rfc822MessageId) {
      const wanted = bare(rfc822MessageId);
      return effects.filter((effect) => effect.type === 'message.sent' && effect.rfc822MessageId !== null && bare(effect.rfc822MessageId) === wanted).length;
    },
    calledCount(endpoint) {
      return calls.filter((call) => call.endpoint === endpoint).length;
    },
    failNext(mode, { times = 1, retryAfterSeconds = 1, on = defaultTarget(mode) } = {}) {
      for (let n = 0; n < times; n++) failures.push({ mode, retryAfterSeconds, on });
    },
    holdTokens() {
      return tokenGate.hold();
    },
    get heldTokens() {
      return tokenGate.held;
    },
    setRefreshTokens(tokens) {
      refreshTokens = new Set(tokens);
    },
    revokeAccessTokens() {
      accessTokens.clear();
    },
    seedMessage({ labelIds = ['INBOX', 'UNREAD'], subject = 'Hello', from = 'someone@example.org', threadId } = {}) {
      const id = newGmailId();
      const message: FakeMessage = {
        id, threadId: threadId ?? id, labelIds, rfc822MessageId: `<seed-${id}@example.org>`, directiveId: null, from, subject,
        to: ['me@example.com'], cc: [], bcc: [], inReplyTo: null, headers: [], source: '',
      };
      messages.set(id, message);
      return message;
    },
    reset() {
      calls.length = 0;
      effects.length = 0;
      failures.length = 0;
      messages.clear();
      drafts.clear();
      refreshes = 0;
      tokenGate.release();
    },
    async close() {
      tokenGate.release();
      hangs.releaseAll();
      await loopback.close();
    },
  };
  return fake;
}
