/**
 * The RFC 2822 message a `gmail.send` or `gmail.draft.create` hands to Gmail
 * as `raw`. Its Message-ID is derived from the directive id, so a later
 * attempt can find what an earlier one sent (Gmail searches it with
 * `rfc822msgid:`), and an `X-Signalbus-Directive` header names the directive
 * for whoever reads the message source. Header values are checked again here
 * (the params schema refused them already): a line break must never reach
 * the header block, whoever calls this.
 */
import { createHash } from 'node:crypto';
import { isHeaderSafe, parseAddress, type ComposeParams } from './params.ts';

export const DIRECTIVE_HEADER = 'X-Signalbus-Directive';
const MESSAGE_ID_DOMAIN = 'signalbus';

export class UnsafeMessageError extends Error {
  constructor(readonly field: string) {
    super(`${field} holds a line break or an invalid address`);
    this.name = 'UnsafeMessageError';
  }
}

/** `<dir_…@signalbus>`: the same on every attempt of a directive. */
export function messageIdOf(directiveId: string): string {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(directiveId)) throw new UnsafeMessageError('directive id');
  return `<${directiveId}@${MESSAGE_ID_DOMAIN}>`;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** RFC 2047 encoded-words of at most ~60 bytes each, cut on character boundaries. */
function encodeWords(text: string): string {
  const words: string[] = [];
  let chunk = '';
  for (const char of text) {
    if (Buffer.byteLength(chunk + char) > 45) {
      words.push(chunk);
      chunk = '';
    }
    chunk += char;
  }
  if (chunk !== '' || words.length === 0) words.push(chunk);
  return words.map((word) => `=?UTF-8?B?${Buffer.from(word, 'utf8').toString('base64')}?=`).join('\r\n ');
}

/** Unstructured header text: as is when plain ASCII, else encoded-words. */
function headerText(field: string, value: string): string {
  if (!isHeaderSafe(value)) throw new UnsafeMessageError(field);
  return PRINTABLE_ASCII.test(value) ? value : encodeWords(value);
}

function formatAddress(field: string, value: string): string {
  const parsed = parseAddress(value);
  if (!parsed) throw new UnsafeMessageError(field);
  if (parsed.name === null) return parsed.address;
  const name = PRINTABLE_ASCII.test(parsed.name) ? `"${parsed.name.replace(/(["\\])/g, '\\$1')}"` : encodeWords(parsed.name);
  return `${name} <${parsed.address}>`;
}

const addressList = (field: string, values: readonly string[]) => values.map((value) => formatAddress(field, value)).join(',\r\n ');

/** Base64 in 76-character lines, as MIME asks of a body part. */
function base64Body(text: string): string {
  return (Buffer.from(text, 'utf8').toString('base64').match(/.{1,76}/g) ?? ['']).join('\r\n');
}

function part(contentType: string, text: string): string[] {
  return [`Content-Type: ${contentType}; charset=UTF-8`, 'Content-Transfer-Encoding: base64', '', base64Body(text)];
}

export interface ComposeInput {
  directiveId: string;
  params: ComposeParams;
  date: Date;
}

/** The message source, CRLF line endings. */
export function composeMessage({ directiveId, params, date }: ComposeInput): string {
  const asList = (value: string | string[] | undefined) => (value === undefined ? [] : typeof value === 'string' ? [value] : value);
  const headers: string[] = [];
  if (params.from !== undefined) headers.push(`From: ${formatAddress('from', params.from)}`);
  headers.push(`To: ${addressList('to', asList(params.to))}`);
  const cc = asList(params.cc);
  if (cc.length > 0) headers.push(`Cc: ${addressList('cc', cc)}`);
  // Gmail delivers to Bcc and strips the header from what recipients see.
  const bcc = asList(params.bcc);
  if (bcc.length > 0) headers.push(`Bcc: ${addressList('bcc', bcc)}`);
  headers.push(`Subject: ${headerText('subject', params.subject)}`);
  headers.push(`Date: ${date.toUTCString().replace('GMT', '+0000')}`);
  headers.push(`Message-ID: ${messageIdOf(directiveId)}`);
  if (params.in_reply_to !== undefined) {
    const inReplyTo = headerText('in_reply_to', params.in_reply_to);
    if (!/^<[^<>\s]+@[^<>\s]+>$/.test(inReplyTo)) throw new UnsafeMessageError('in_reply_to');
    headers.push(`In-Reply-To: ${inReplyTo}`, `References: ${inReplyTo}`);
  }
  headers.push(`${DIRECTIVE_HEADER}: ${directiveId}`, 'MIME-Version: 1.0');

  let body: string[];
  if (params.text !== undefined && params.html !== undefined) {
    // Base64 never contains "=_", so the boundary cannot occur in a part.
    const boundary = `=_sb_${createHash('sha256').update(directiveId).digest('hex').slice(0, 24)}`;
    headers.push(`Content-Type: multipart/alternative; boundary="${boundary}"`);
    body = ['', `--${boundary}`, ...part('text/plain', params.text), `--${boundary}`, ...part('text/html', params.html), `--${boundary}--`, ''];
  } else if (params.html !== undefined) {
    body = part('text/html', params.html);
  } else {
    body = part('text/plain', params.text ?? '');
  }
  // A single part's own headers join the message's header block.
  return [...headers, ...body].join('\r\n');
}

/** Gmail's `raw`: the message source in base64url. */
export const toRaw = (message: string): string => Buffer.from(message, 'utf8').toString('base64url');
