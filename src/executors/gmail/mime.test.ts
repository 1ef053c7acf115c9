import { describe, expect, it } from 'vitest';
import { parseRetryAfter } from './errors.ts';
import { composeMessage, messageIdOf, UnsafeMessageError } from './mime.ts';
import { ComposeParams, gmailRecipients, LabelsModifyParams } from './params.ts';
import { createTokenCache } from './tokens.ts';

const DATE = new Date('2025-03-04T05:06:07Z');
const compose = (params: Record<string, unknown>) => ComposeParams.parse({ to: 'ada@example.com', subject: 'Hi', text: 'Hello', ...params });
const headerBlock = (source: string) => source.slice(0, source.indexOf('\r\n\r\n'));

describe('gmail params', () => {
  it('refuse line breaks and control characters in every header field', () => {
    for (const params of [
      { subject: 'Hi\r\nBcc: eve@example.com' },
      { subject: 'Hi\nthere' },
      { subject: 'Hi\u2028there' },
      { to: 'ada@example.com\r\nBcc: eve@example.com' },
      { cc: ['bob@example.com', 'x@example.com\nBcc: eve@example.com'] },
      { from: 'Ada\r\n <ada@example.com>' },
      { in_reply_to: '<a@b>\r\nX: y' },
    ]) {
      expect(ComposeParams.safeParse({ to: 'ada@example.com', subject: 'Hi', text: 'x', ...params }).success, JSON.stringify(params)).toBe(false);
    }
  });

  it('refuse what is not an address, a body-less message, unknown fields and empty label changes', () => {
    expect(ComposeParams.safeParse({ to: 'not an address', subject: 'Hi', text: 'x' }).success).toBe(false);
    expect(ComposeParams.safeParse({ to: [], subject: 'Hi', text: 'x' }).success).toBe(false);
    expect(ComposeParams.safeParse({ to: 'ada@example.com', subject: 'Hi' }).success).toBe(false);
    expect(ComposeParams.safeParse({ to: 'ada@example.com', subject: 'Hi', text: 'x', attachments: [] }).success).toBe(false);
    expect(LabelsModifyParams.safeParse({ message_id: '18f0a' }).success).toBe(false);
    expect(LabelsModifyParams.safeParse({ message_id: '../x', add_label_ids: ['STARRED'] }).success).toBe(false);
    expect(LabelsModifyParams.parse({ message_id: '18f0a', add_label_ids: ['STARRED'] })).toEqual({ message_id: '18f0a', add_label_ids: ['STARRED'] });
  });

  it('store one recipient as a list and a reply target with its angle brackets', () => {
    expect(compose({ in_reply_to: 'abc@mail.example.com' })).toMatchObject({ to: ['ada@example.com'], in_reply_to: '<abc@mail.example.com>' });
  });

  it('name every recipient once, bare and lower-cased, for the suppression guard', () => {
    const params = compose({ to: ['Ada <Ada@Example.com>', 'bob@example.com'], cc: 'carol@example.com', bcc: ['ada@example.com', '"Dan D." <dan@example.com>'] });
    expect(gmailRecipients('gmail.send', params)).toEqual(['ada@example.com', 'bob@example.com', 'carol@example.com', 'dan@example.com']);
    expect(gmailRecipients('gmail.draft.create', params)).toHaveLength(4);
    expect(gmailRecipients('gmail.labels.modify', { message_id: '18f0a', add_label_ids: ['STARRED'] })).toEqual([]);
  });
});

describe('the message', () => {
  it('carries a Message-ID and a header derived from the directive id', () => {
    const source = composeMessage({ directiveId: 'dir_01ABC', params: compose({}), date: DATE });
    expect(messageIdOf('dir_01ABC')).toBe('<dir_01ABC@signalbus>');
    expect(headerBlock(source).split('\r\n')).toEqual([
      'To: ada@example.com',
      'Subject: Hi',
      'Date: Tue, 04 Mar 2025 05:06:07 +0000',
      'Message-ID: <dir_01ABC@signalbus>',
      'X-Signalbus-Directive: dir_01ABC',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=UTF-8',
      'Content-Transfer-Encoding: base64',
    ]);
    expect(source.endsWith(`\r\n\r\n${Buffer.from('Hello').toString('base64')}`)).toBe(true);
  });

  it('encodes non-ASCII subjects and names as encoded-words, and quotes ASCII names', () => {
    const subject = 'Grüße aus Köln — '.repeat(6);
    const source = composeMessage({ directiveId: 'dir_1', params: compose({ subject, from: 'Zoë <zoe@example.com>', cc: ['Bob "B" Smith <bob@example.com>'] }), date: DATE });
    const headers = headerBlock(source);
    expect(headers).toMatch(/^From: =\?UTF-8\?B\?[A-Za-z0-9+/=]+\?= <zoe@example.com>$/m);
    expect(headers).toContain('Cc: "Bob \\"B\\" Smith" <bob@example.com>');
    const encoded = /^Subject: ((?:.|\r\n )*)$/m.exec(headers)![1]!;
    const words = encoded.split('\r\n ');
    expect(words.length).toBeGreaterThan(1);
    for (const word of words) expect(word.length).toBeLessThanOrEqual(75);
    expect(words.map((word) => Buffer.from(/^=\?UTF-8\?B\?(.*)\?=$/.exec(word)![1]!, 'base64').toString('utf8')).join('')).toBe(subject);
  });

  it('puts text and html in a multipart/alternative', () => {
    const source = composeMessage({ directiveId: 'dir_2', params: compose({ text: 'plain', html: '<p>rich</p>', in_reply_to: '<x@y.z>' }), date: DATE });
    const boundary = /boundary="([^"]+)"/.exec(source)![1]!;
    expect(source).toContain('In-Reply-To: <x@y.z>\r\nReferences: <x@y.z>');
    expect(source.split(`--${boundary}`)).toHaveLength(4);
    expect(source).toContain(Buffer.from('<p>rich</p>').toString('base64'));
    expect(source).toContain(`--${boundary}--`);
  });

  it('refuses a header value with a line break even past the schema', () => {
    const params = { ...compose({}), subject: 'Hi\r\nBcc: eve@example.com' };
    expect(() => composeMessage({ directiveId: 'dir_3', params, date: DATE })).toThrow(UnsafeMessageError);
    expect(() => composeMessage({ directiveId: 'dir_3', params: { ...compose({}), to: ['a@b.c>\r\nX: y'] }, date: DATE })).toThrow(UnsafeMessageError);
    expect(() => messageIdOf('dir_3>\r\nBcc: eve@example.com')).toThrow(UnsafeMessageError);
  });
});

describe('Retry-After', () => {
  it('reads delay-seconds and HTTP dates, capped', () => {
    const now = Date.parse('2025-03-04T05:06:07Z');
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter('Tue, 04 Mar 2025 05:06:17 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('Tue, 04 Mar 2025 05:06:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('86400', now)).toBe(15 * 60_000);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('the token cache', () => {
  it('shares one refresh among concurrent callers and reuses the token until shortly before expiry', async () => {
    let now = 1_000_000;
    const cache = createTokenCache({ now: () => now, marginMs: 60_000 });
    let refreshes = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const refresh = async () => {
      refreshes++;
      await gate;
      return { token: `t${refreshes}`, expiresAt: now + 3_600_000 };
    };
    const leases = Promise.all(Array.from({ length: 5 }, () => cache.get('k', refresh)));
    open();
    expect(await leases).toEqual(Array.from({ length: 5 }, () => ({ token: 't1', refreshed: true })));
    expect(await cache.get('k', refresh)).toEqual({ token: 't1', refreshed: false });
    now += 3_600_000 - 60_000;
    expect(await cache.get('k', refresh)).toEqual({ token: 't2', refreshed: true });
    expect(refreshes).toBe(2);
  });

  it('forgets a failed refresh and an invalidated token, but not a newer one', async () => {
    const cache = createTokenCache();
    await expect(cache.get('k', async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(await cache.get('k', async () => ({ token: 'a', expiresAt: Date.now() + 3_600_000 }))).toEqual({ token: 'a', refreshed: true });
    cache.invalidate('k', 'other');
    expect((await cache.get('k', async () => ({ token: 'b', expiresAt: Date.now() + 3_600_000 }))).token).toBe('a');
    cache.invalidate('k', 'a');
    expect((await cache.get('k', async () => ({ token: 'b', expiresAt: Date.now() + 3_600_000 }))).token).toBe('b');
  });
});
