/**
 * A fake OpenAI API on loopback, enough of `POST /v1/chat/completions` for
 * the real `openai` SDK: it checks the Bearer key, answers deterministically
 * (an echo of the last user message, or for `response_format: json_schema`
 * an instance derived from the schema, or a canned output the test set),
 * reports `usage` computed from the text lengths, counts calls, and fails on
 * demand the way OpenAI does (500, 429 with Retry-After, 401, 400, a hang,
 * a slow answer, output that breaks the schema). No vitest here: it also
 * runs as a standalone demo server.
 */
import { Hono } from 'hono';
import { createHangs, serveOnLoopback } from './loopback.ts';

/** The key the fake accepts unless told otherwise. */
export const FAKE_OPENAI_KEY = 'sk-fake-openai-0000000000000000';

/**
 * `server_error` (500), `rate_limited` (429 with Retry-After),
 * `insufficient_quota` (429, out of credit), `unauthorized` (401 whatever the
 * key), `bad_request` (400 with a code), `hang` (never answers), `delay`
 * (answers normally, late), `invalid_output` (200 whose content breaks the
 * requested schema).
 */
export type OpenAIFailure =
  | 'server_error'
  | 'rate_limited'
  | 'insufficient_quota'
  | 'unauthorized'
  | 'bad_request'
  | 'hang'
  | 'delay'
  | 'invalid_output';

export interface FailureOptions {
  /** `rate_limited`: `Retry-After` in seconds (default 1). */
  retryAfterSeconds?: number;
  /** `rate_limited`: `retry-after-ms` instead. */
  retryAfterMs?: number;
  /** `bad_request`: the error code and message (defaults: `invalid_value`, a parameter complaint). */
  code?: string;
  message?: string;
  /** `delay`: how late the answer comes (default 1000 ms). */
  delayMs?: number;
  /** `invalid_output`: the content to answer with (default a JSON object matching no useful schema). */
  output?: string;
}

export interface ChatRequest {
  at: number;
  body: ChatBody;
  /** The status answered (0 while hanging or delayed). */
  status: number;
}

export interface ChatBody {
  model?: string;
  messages?: { role: string; content: string }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  response_format?: { type: string; json_schema?: { name: string; schema?: Record<string, unknown>; strict?: boolean } };
}

export interface OpenAIFake {
  /** The server root; the SDK's base URL is {@link OpenAIFake.baseUrl}. */
  url: string;
  /** `${url}/v1`, what `SIGNALBUS_OPENAI_BASE_URL` points at. */
  baseUrl: string;
  port: number;
  apiKey: string;
  calls: { chatCompletions: number; unauthorized: number };
  /** Every chat request, in arrival order, failures included. */
  requests: ChatRequest[];
  failNext(mode: OpenAIFailure, options?: FailureOptions & { times?: number }): void;
  /** Answers with this content (an object is sent as its JSON) until reset; undefined goes back to the derived reply. */
  setOutput(output: string | Record<string, unknown> | undefined): void;
  reset(): void;
  close(): Promise<void>;
}

/** What the fake counts a text as: about four characters a token, like English under OpenAI's tokenizers. */
export const fakeTokens = (text: string) => Math.ceil(text.length / 4);

/** The usage the fake reports for `messages` answered with `content`. */
export function fakeUsage(messages: { content: string }[], content: string) {
  const prompt_tokens = 3 + messages.reduce((sum, message) => sum + 4 + fakeTokens(message.content), 0);
  const completion_tokens = fakeTokens(content);
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

/** A trivial instance of a JSON Schema: first enum value, zero, empty string, every declared property. */
export function instanceOf(schema: unknown): unknown {
  if (!schema || typeof schema !== 'object') return null;
  const node = schema as Record<string, any>;
  if ('const' in node) return node.const;
  if (Array.isArray(node.enum) && node.enum.length > 0) return node.enum[0];
  if (Array.isArray(node.anyOf) && node.anyOf.length > 0) return instanceOf(node.anyOf[0]);
  const type = Array.isArray(node.type) ? node.type[0] : node.type;
  switch (type) {
    case 'object':
      return Object.fromEntries(Object.entries((node.properties ?? {}) as Record<string, unknown>).map(([key, value]) => [key, instanceOf(value)]));
    case 'array':
      return node.minItems > 0 ? Array.from({ length: node.minItems }, () => instanceOf(node.items)) : [];
    case 'string':
      return 'x'.repeat(Math.max(1, node.minLength ?? 1));
    case 'integer':
    case 'number':
      return typeof node.minimum === 'number' ? node.minimum : 0;
    case 'boolean':
      return true;
    default:
      return null;
  }
}

const openAIError = (message: string, type: string, code: string | null, param: string | null = null) => ({ error: { message, type, param, code } });

export async function startOpenAIFake(options: { port?: number; apiKey?: string } = {}): Promise<OpenAIFake> {
  const apiKey = options.apiKey ?? FAKE_OPENAI_KEY;
  const calls = { chatCompletions: 0, unauthorized: 0 };
  const requests: ChatRequest[] = [];
  let queued: Array<{ mode: OpenAIFailure } & FailureOptions> = [];
  let canned: string | undefined;
  let served = 0;
  // Hung requests are released on reset and close, so the server can stop.
  const hangs = createHangs();

  const app = new Hono();
  app.post('/v1/chat/completions', async (c) => {
    calls.chatCompletions++;
    const body = (await c.req.json().catch(() => ({}))) as ChatBody;
    const request: ChatRequest = { at: Date.now(), body, status: 0 };
    requests.push(request);
    const answer = (status: number, json: unknown, headers: Record<string, string> = {}) => {
      request.status = status;
      for (const [name, value] of Object.entries(headers)) c.header(name, value);
      return c.json(json as object, status as 200);
    };

    const failure = queued.shift();
    if (c.req.header('authorization') !== `Bearer ${apiKey}` || failure?.mode === 'unauthorized') {
      calls.unauthorized++;
      // Like OpenAI: the key shown masked, never whole.
      return answer(401, openAIError('Incorrect API key provided: sk-fake-****0000. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_request_error', 'invalid_api_key'));
    }
    if (!body.model || !Array.isArray(body.messages) || body.messages.length === 0) {
      return answer(400, openAIError("Missing required parameter: 'model' or 'messages'.", 'invalid_request_error', 'missing_required_parameter'));
    }
    switch (failure?.mode) {
      case 'server_error':
        return answer(500, openAIError('The server had an error while processing your request. Sorry about that!', 'server_error', null));
      case 'rate_limited':
        return answer(
          429,
          openAIError(`Rate limit reached for ${body.model}. Please try again later.`, 'requests', 'rate_limit_exceeded'),
          failure.retryAfterMs !== undefined ? { 'retry-after-ms': String(failure.retryAfterMs) } : { 'retry-after': String(failure.retryAfterSeconds ?? 1) },
        );
      case 'insufficient_quota':
        return answer(429, openAIError('You exceeded your current quota, please check your plan and billing details.', 'insufficient_quota', 'insufficient_quota'));
      case 'bad_request':
        return answer(400, openAIError(failure.message ?? "Invalid value for 'temperature': expected a number.", 'invalid_request_error', failure.code ?? 'invalid_value', 'temperature'));
      case 'hang':
        await hangs.hang();
        return c.body(null, 503);
      case 'delay':
        await new Promise((resolve) => setTimeout(resolve, failure.delayMs ?? 1000));
        break;
      default:
        break;
    }

    const schema = body.response_format?.type === 'json_schema' ? body.response_format.json_schema?.schema : undefined;
    const lastUser = [...body.messages].reverse().find((message) => message.role === 'user');
    const content =
      failure?.mode === 'invalid_output'
        ? (failure.output ?? JSON.stringify({ unexpected: true }))
        : (canned ?? (schema ? JSON.stringify(instanceOf(schema)) : `Echo: ${lastUser?.content ?? ''}`));
    served++;
    return answer(200, {
      id: `chatcmpl-fake${String(served).padStart(6, '0')}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: fakeUsage(body.messages, content),
      system_fingerprint: 'fp_fake',
    });
  });
  app.all('*', (c) => c.json(openAIError(`Invalid URL (${c.req.method} ${new URL(c.req.url).pathname})`, 'invalid_request_error', null), 404));

  const loopback = await serveOnLoopback(app, { port: options.port ?? 0 });
  const { port, url } = loopback;

  return {
    url,
    baseUrl: `${url}/v1`,
    port,
    apiKey,
    calls,
    requests,
    failNext(mode, { times = 1, ...rest } = {}) {
      for (let n = 0; n < times; n++) queued.push({ mode, ...rest });
    },
    setOutput(output) {
      canned = output === undefined || typeof output === 'string' ? output : JSON.stringify(output);
    },
    reset() {
      hangs.releaseAll();
      Object.assign(calls, { chatCompletions: 0, unauthorized: 0 });
      requests.length = 0;
      queued = [];
      canned = undefined;
    },
    async close() {
      hangs.releaseAll();
      await loopback.close();
    },
  };
}
