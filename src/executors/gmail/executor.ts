/**
 * The `gmail.*` executor: sends mail, creates drafts and changes labels
 * through the Gmail API (`googleapis`), authorized by the `gmail_oauth`
 * credential of the installation (or the org).
 *
 * Gmail has no idempotency key, so a send is made findable instead: its
 * Message-ID is derived from the directive id, and any attempt that may
 * follow an earlier one's effect first searches the mailbox for that
 * Message-ID and records what it finds rather than sending twice. "May
 * follow" is wider than the core's `priorOutcomeUnknown` (a worker died
 * mid-call): a retry after a lost connection or a timeout is recorded as an
 * ordinary retryable failure, yet Gmail may have accepted the message before
 * the answer was lost — so every attempt after the first looks first.
 * Labels need no lookup: setting the same labels twice changes nothing.
 */
// googleapis' own Gmail entry point: what `google.gmail(...)` returns,
// without loading the package index and its ~300 APIs (most of a second at
// every process start).
import { gmail as gmailApi, type gmail_v1 } from 'googleapis/build/src/apis/gmail/index.js';
import type { Credentials, ExecuteRequest, ExecuteResult, Executor } from '../registry.ts';
import { apiFailure, GMAIL_CREDENTIAL, statusOf, tokenFailure, type Failure } from './errors.ts';
import { composeMessage, messageIdOf, toRaw, UnsafeMessageError } from './mime.ts';
import {
  GMAIL_DRAFT_CREATE,
  GMAIL_KINDS,
  GMAIL_LABELS_MODIFY,
  GMAIL_PARAMS,
  GMAIL_SEND,
  gmailRecipients,
  type ComposeParams,
  type GmailParams,
  type LabelsModifyParams,
} from './params.ts';
import { createTokenCache, GmailCredential, oauthClient, refreshAccessToken, tokenCacheKey, type OAuthClientOptions, type TokenCache } from './tokens.ts';

export interface GmailExecutorOptions {
  /** Root of the Gmail API, an origin (`SIGNALBUS_GOOGLE_API_BASE`); Google's when undefined. */
  apiBase?: string;
  /** Origin of the OAuth token endpoint, served at `/token` (`SIGNALBUS_GOOGLE_OAUTH_BASE`); Google's when undefined. */
  oauthBase?: string;
  /** Per HTTP call, token refreshes included. */
  timeoutMs?: number;
  /** Shared between executors of one process; tests pass their own. */
  tokenCache?: TokenCache;
  now?: () => Date;
}

type Gmail = gmail_v1.Gmail;
type Succeeded = Extract<ExecuteResult, { outcome: 'succeeded' }>;

const DEFAULT_TIMEOUT_MS = 30_000;
const ME = 'me';

const permanent = (code: string, message: string): Failure => ({ outcome: 'permanent', error: { code, message } });
const succeeded = (result: Record<string, unknown>): Succeeded => ({ outcome: 'succeeded', result });

/** The `gmail_oauth` secret, parsed; a failure names the secret, never its content. */
async function loadCredential(credentials: Credentials): Promise<{ credential: GmailCredential; secret: string } | Failure> {
  const secret = await credentials.get(GMAIL_CREDENTIAL);
  if (secret === undefined) return permanent('missing_credential', `the secret ${GMAIL_CREDENTIAL} is not set for this installation or its org`);
  let json: unknown;
  try {
    json = JSON.parse(secret);
  } catch {
    return permanent('invalid_credential', `the secret ${GMAIL_CREDENTIAL} is not JSON {client_id, client_secret, refresh_token}`);
  }
  const parsed = GmailCredential.safeParse(json);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(root)'))].join(', ');
    return permanent('invalid_credential', `the secret ${GMAIL_CREDENTIAL} lacks a valid ${fields}`);
  }
  return { credential: parsed.data, secret };
}

/** Replaces any secret the call handled that a provider's message might echo. */
function redact(result: ExecuteResult, secrets: ReadonlySet<string>): ExecuteResult {
  if (result.outcome === 'succeeded') return result;
  let { message } = result.error;
  for (const secret of secrets) if (secret.length >= 6) message = message.split(secret).join('[redacted]');
  return { ...result, error: { ...result.error, message } };
}

const rfc822Query = (messageId: string) => `rfc822msgid:${messageId.slice(1, -1)}`;

/** The message an earlier attempt sent, found by its Message-ID; drafts with that id do not count. */
async function findSent(gmail: Gmail, messageId: string) {
  // Spam and trash included: a sent message the user has since trashed was still sent.
  const { data } = await gmail.users.messages.list({ userId: ME, q: rfc822Query(messageId), includeSpamTrash: true, maxResults: 10 });
  for (const hit of data.messages ?? []) {
    if (!hit.id) continue;
    const { data: message } = await gmail.users.messages.get({ userId: ME, id: hit.id, format: 'metadata', metadataHeaders: ['Message-ID'] });
    if (message.labelIds?.includes('DRAFT')) continue;
    return message;
  }
  return undefined;
}

async function findDraft(gmail: Gmail, messageId: string) {
  const { data } = await gmail.users.drafts.list({ userId: ME, q: rfc822Query(messageId), includeSpamTrash: true, maxResults: 10 });
  return data.drafts?.find((draft) => draft.id && draft.message?.id);
}

const messageSummary = (message: gmail_v1.Schema$Message, rfc822MessageId: string) => ({
  message_id: message.id ?? null,
  thread_id: message.threadId ?? null,
  rfc822_message_id: rfc822MessageId,
  ...(message.labelIds ? { label_ids: message.labelIds } : {}),
});

async function send(gmail: Gmail, request: ExecuteRequest<GmailParams>, params: ComposeParams, raw: string, mayExist: boolean): Promise<Succeeded> {
  const rfc822MessageId = messageIdOf(request.directiveId);
  if (mayExist) {
    // Gmail's search index can lag a just-accepted message by moments; the
    // core's backoff usually spaces attempts wider than that.
    const prior = await findSent(gmail, rfc822MessageId);
    if (prior) return succeeded({ ...messageSummary(prior, rfc822MessageId), recovered: true });
  }
  const { data } = await gmail.users.messages.send({
    userId: ME,
    requestBody: { raw, ...(params.thread_id ? { threadId: params.thread_id } : {}) },
  });
  return succeeded(messageSummary(data, rfc822MessageId));
}

async function createDraft(gmail: Gmail, request: ExecuteRequest<GmailParams>, params: ComposeParams, raw: string, mayExist: boolean): Promise<Succeeded> {
  const rfc822MessageId = messageIdOf(request.directiveId);
  const summary = (draft: gmail_v1.Schema$Draft) => ({ draft_id: draft.id ?? null, ...messageSummary(draft.message ?? {}, rfc822MessageId) });
  if (mayExist) {
    const prior = await findDraft(gmail, rfc822MessageId);
    if (prior) return succeeded({ ...summary(prior), recovered: true });
  }
  const { data } = await gmail.users.drafts.create({
    userId: ME,
    requestBody: { message: { raw, ...(params.thread_id ? { threadId: params.thread_id } : {}) } },
  });
  return succeeded(summary(data));
}

async function modifyLabels(gmail: Gmail, params: LabelsModifyParams): Promise<Succeeded> {
  const { data } = await gmail.users.messages.modify({
    userId: ME,
    id: params.message_id,
    requestBody: { addLabelIds: params.add_label_ids ?? [], removeLabelIds: params.remove_label_ids ?? [] },
  });
  return succeeded({ message_id: data.id ?? params.message_id, thread_id: data.threadId ?? null, label_ids: data.labelIds ?? [] });
}

function tokenUrlOf(oauthBase: string | undefined): string | undefined {
  if (oauthBase === undefined) return undefined;
  return new URL('token', oauthBase.endsWith('/') ? oauthBase : `${oauthBase}/`).toString();
}

export function createGmailExecutor(options: GmailExecutorOptions = {}): Executor<GmailParams> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const now = options.now ?? (() => new Date());
  const nowMs = () => now().getTime();
  const tokens = options.tokenCache ?? createTokenCache({ now: nowMs });
  const oauth: OAuthClientOptions = { tokenUrl: tokenUrlOf(options.oauthBase), timeoutMs };
  const rootUrl = options.apiBase === undefined ? undefined : options.apiBase.endsWith('/') ? options.apiBase : `${options.apiBase}/`;

  function gmailFor(accessToken: string): Gmail {
    // No refresh token on this client: it can never refresh behind the cache's back.
    const auth = oauthClient(oauth);
    auth.setCredentials({ access_token: accessToken });
    return gmailApi({ version: 'v1', auth, retry: false, timeout: timeoutMs, ...(rootUrl ? { rootUrl } : {}) });
  }

  /**
   * Runs `call` with an authorized client. A 401 on a cached token may mean
   * Google revoked that token early while the grant still stands: the cached
   * token is dropped and one freshly refreshed token decides. Gmail refuses a
   * 401 call before acting, so calling again cannot repeat an effect.
   */
  async function withGmail(request: ExecuteRequest<GmailParams>, loaded: { credential: GmailCredential; secret: string }, call: (gmail: Gmail) => Promise<Succeeded>): Promise<ExecuteResult> {
    const key = tokenCacheKey(request, loaded.secret);
    const handled = new Set([loaded.credential.client_secret, loaded.credential.refresh_token, loaded.secret]);
    for (let round = 0; ; round++) {
      let lease;
      try {
        lease = await tokens.get(key, () => refreshAccessToken(oauth, loaded.credential, nowMs));
      } catch (error) {
        return redact(tokenFailure(error, nowMs()), handled);
      }
      handled.add(lease.token);
      try {
        return await call(gmailFor(lease.token));
      } catch (error) {
        if (statusOf(error) === 401) {
          tokens.invalidate(key, lease.token);
          if (!lease.refreshed && round === 0) continue;
        }
        return redact(apiFailure(error, nowMs()), handled);
      }
    }
  }

  return {
    kinds: GMAIL_KINDS,
    params: GMAIL_PARAMS,
    estimateCostUsd: () => 0,
    honorsIdempotencyKey: false,
    looksUpPriorEffect: true,
    recipients: gmailRecipients,
    async execute(request) {
      const schema = Object.hasOwn(GMAIL_PARAMS, request.kind) ? GMAIL_PARAMS[request.kind] : undefined;
      if (!schema) return permanent('unknown_kind', `the gmail executor does not serve ${request.kind}`);
      // Stored params can predate the schema: checked again before any effect.
      const parsed = schema.safeParse(request.params);
      if (!parsed.success) {
        return permanent('invalid_params', `params are not valid for ${request.kind}: ${parsed.error.issues.map((issue) => issue.path.join('.') || '(root)').join(', ')}`);
      }
      const loaded = await loadCredential(request.credentials);
      if ('outcome' in loaded) return loaded;

      if (request.kind === GMAIL_LABELS_MODIFY) return withGmail(request, loaded, (gmail) => modifyLabels(gmail, parsed.data as LabelsModifyParams));

      const params = parsed.data as ComposeParams;
      let raw: string;
      try {
        raw = toRaw(composeMessage({ directiveId: request.directiveId, params, date: now() }));
      } catch (error) {
        if (error instanceof UnsafeMessageError) return permanent('invalid_params', error.message);
        throw error;
      }
      const mayExist = request.priorOutcomeUnknown || request.attempt > 1;
      const compose = request.kind === GMAIL_SEND ? send : request.kind === GMAIL_DRAFT_CREATE ? createDraft : undefined;
      if (!compose) return permanent('unknown_kind', `the gmail executor does not serve ${request.kind}`);
      return withGmail(request, loaded, (gmail) => compose(gmail, request, params, raw, mayExist));
    },
  };
}
