/**
 * Params of the `gmail.*` kinds, checked at proposal. Every value that ends up
 * in a message header is refused when it holds a line break or another
 * control character: a CR/LF in a subject or an address would let a proposer
 * add headers (a Bcc nobody approved) or start the body early.
 */
import { z } from 'zod';

export const GMAIL_SEND = 'gmail.send';
export const GMAIL_DRAFT_CREATE = 'gmail.draft.create';
export const GMAIL_LABELS_MODIFY = 'gmail.labels.modify';
export const GMAIL_KINDS = [GMAIL_SEND, GMAIL_DRAFT_CREATE, GMAIL_LABELS_MODIFY] as const;

/** C0 controls but tab, DEL, and the Unicode line breaks some mail software honours. */
const HEADER_BREAKING = /[\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]/;
export const isHeaderSafe = (value: string): boolean => !HEADER_BREAKING.test(value);
const HEADER_SAFE_MESSAGE = 'must not contain line breaks or control characters';

/** A practical addr-spec: no spaces, quotes, brackets or separators; a dotted domain. */
const ADDR_SPEC = /^[^\s@<>()",;:\\[\]]+@[^\s@<>()",;:\\[\]]+\.[^\s@<>()",;:\\[\].]+$/;
const NAME_ADDR = /^(.*?)\s*<([^<>]*)>$/;

export interface ParsedAddress {
  /** The display name, when one was given. */
  name: string | null;
  address: string;
}

/** `ada@example.com` or `Ada Lovelace <ada@example.com>`; null when neither. */
export function parseAddress(value: string): ParsedAddress | null {
  const trimmed = value.trim();
  if (!isHeaderSafe(trimmed)) return null;
  const named = NAME_ADDR.exec(trimmed);
  const address = named ? named[2]!.trim() : trimmed;
  if (!ADDR_SPEC.test(address) || address.length > 254) return null;
  const name = named ? named[1]!.trim().replace(/^"(.*)"$/, '$1') : '';
  return { name: name === '' ? null : name, address };
}

const Address = z
  .string()
  .trim()
  .min(3)
  .max(320)
  .refine(isHeaderSafe, HEADER_SAFE_MESSAGE)
  .refine((value) => parseAddress(value) !== null, 'must be an email address or "Name <address>"');

/** One address or a list; stored as a list. */
const AddressList = z
  .union([Address, z.array(Address).min(1).max(100)])
  .transform((value) => (typeof value === 'string' ? [value] : value));

const HeaderText = (max: number) => z.string().max(max).refine(isHeaderSafe, HEADER_SAFE_MESSAGE);

/** Gmail's ids: message, thread and draft ids are short URL-safe tokens. */
const GmailId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be a Gmail id');
const LabelId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be a Gmail label id');

/** A Message-ID to reply to, stored with its angle brackets. */
const MessageIdRef = HeaderText(998)
  .transform((value) => value.trim())
  .refine((value) => /^<?[^<>\s]+@[^<>\s]+>?$/.test(value), 'must be a Message-ID such as <id@host>')
  .transform((value) => `<${value.replace(/^<|>$/g, '')}>`);

const MAX_BODY = 500_000;

export const ComposeParams = z
  .object({
    to: AddressList,
    cc: AddressList.optional(),
    bcc: AddressList.optional(),
    subject: HeaderText(998),
    text: z.string().max(MAX_BODY).optional(),
    html: z.string().max(MAX_BODY).optional(),
    from: Address.optional(),
    thread_id: GmailId.optional(),
    in_reply_to: MessageIdRef.optional(),
  })
  .strict()
  .refine((params) => params.text !== undefined || params.html !== undefined, { message: 'text or html is required', path: ['text'] });
export type ComposeParams = z.infer<typeof ComposeParams>;

export const LabelsModifyParams = z
  .object({
    message_id: GmailId,
    add_label_ids: z.array(LabelId).max(100).optional(),
    remove_label_ids: z.array(LabelId).max(100).optional(),
  })
  .strict()
  .refine((params) => (params.add_label_ids?.length ?? 0) + (params.remove_label_ids?.length ?? 0) > 0, {
    message: 'add_label_ids or remove_label_ids must name a label',
    path: ['add_label_ids'],
  });
export type LabelsModifyParams = z.infer<typeof LabelsModifyParams>;

export type GmailParams = ComposeParams | LabelsModifyParams;

export const GMAIL_PARAMS: Readonly<Record<string, z.ZodType<GmailParams>>> = {
  [GMAIL_SEND]: ComposeParams,
  [GMAIL_DRAFT_CREATE]: ComposeParams,
  [GMAIL_LABELS_MODIFY]: LabelsModifyParams,
};

/**
 * The bare addresses a send or a draft reaches (to, cc and bcc), lower-cased,
 * once each: what the org's suppression guard checks. Labels reach nobody.
 */
export function gmailRecipients(kind: string, params: GmailParams): string[] {
  if (kind !== GMAIL_SEND && kind !== GMAIL_DRAFT_CREATE) return [];
  const compose = params as ComposeParams;
  const all = [compose.to, compose.cc ?? [], compose.bcc ?? []].flatMap((list) => (typeof list === 'string' ? [list] : list));
  const addresses = all.map((value) => parseAddress(value)?.address.toLowerCase()).filter((address): address is string => !!address);
  return [...new Set(addresses)];
}
