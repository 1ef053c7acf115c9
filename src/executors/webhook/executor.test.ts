import { describe, expect, it } from 'vitest';
import { createWebhookExecutor, originOf, WebhookPostParams } from './executor.ts';

const valid = { url: 'https://hooks.example.com/in?x=1', body: { a: 1 } };

describe('webhook.post params', () => {
  it('accept a JSON body of any shape, safe headers and a bounded timeout', () => {
    for (const body of [{ nested: { list: [1, 'two', null, true] } }, [1, 2], 'text', 3, null]) {
      expect(WebhookPostParams.safeParse({ ...valid, body }).success).toBe(true);
    }
    expect(WebhookPostParams.parse({ ...valid, headers: { 'X-Tenant': 'acme', 'user-agent': 'mine' }, timeout_ms: 2500 })).toMatchObject({
      headers: { 'X-Tenant': 'acme' },
      timeout_ms: 2500,
    });
  });

  it.each([
    ['an ftp URL', { url: 'ftp://example.com/x' }],
    ['a URL with credentials', { url: 'https://user:pass@example.com/x' }],
    ['no URL', { url: undefined }],
    ['no body', { body: undefined }],
    ['a body that is not JSON', { body: { when: new Date() } }],
    ['a host header', { headers: { Host: 'evil.example' } }],
    ['a content-length header', { headers: { 'content-length': '1' } }],
    ['a webhook-* header', { headers: { 'Webhook-Id': 'mine' } }],
    ['a hop-by-hop header', { headers: { connection: 'upgrade' } }],
    ['a transfer-encoding header', { headers: { 'transfer-encoding': 'chunked' } }],
    ['an authorization header', { headers: { authorization: 'Bearer sk_live_secret' } }],
    ['a header value with CRLF', { headers: { 'x-a': 'b\r\nx-injected: 1' } }],
    ['a header name with spaces', { headers: { 'x a': 'b' } }],
    ['a timeout below the floor', { timeout_ms: 10 }],
    ['a timeout above the ceiling', { timeout_ms: 600_000 }],
    ['an unknown field', { method: 'GET' }],
  ])('refuse %s', (_what, change) => {
    expect(WebhookPostParams.safeParse({ ...valid, ...change }).success).toBe(false);
  });
});

describe('the webhook circuit', () => {
  it('keys a breaker per origin, default ports spelled out', () => {
    expect(originOf('https://hooks.example.com/a?b=1')).toBe('https://hooks.example.com:443');
    expect(originOf('https://hooks.example.com:443/other')).toBe('https://hooks.example.com:443');
    expect(originOf('http://hooks.example.com/a')).toBe('http://hooks.example.com:80');
    expect(originOf('http://[::1]:8080/a')).toBe('http://[::1]:8080');
    const executor = createWebhookExecutor({ allowPrivateTargets: false });
    expect(executor.circuit).toMatchObject({ failureThreshold: 5, cooldownMs: 30_000 });
    expect(executor.circuit!.key('webhook.post', WebhookPostParams.parse(valid))).toBe('https://hooks.example.com:443');
    const tuned = createWebhookExecutor({ allowPrivateTargets: false, circuitFailureThreshold: 2, circuitCooldownMs: 500 });
    expect(tuned.circuit).toMatchObject({ failureThreshold: 2, cooldownMs: 500 });
    expect(executor.honorsIdempotencyKey).toBe(true);
  });
});
