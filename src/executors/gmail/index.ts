/**
 * executors/gmail — `gmail.send`, `gmail.draft.create`, `gmail.labels.modify`
 * through the Gmail API. Only `builtin.ts` builds it; tests build their own
 * with a fake provider's URLs.
 */
export { createGmailExecutor, type GmailExecutorOptions } from './executor.ts';
export { GMAIL_CREDENTIAL } from './errors.ts';
export { DIRECTIVE_HEADER, messageIdOf } from './mime.ts';
export { GMAIL_DRAFT_CREATE, GMAIL_KINDS, GMAIL_LABELS_MODIFY, GMAIL_SEND, gmailRecipients } from './params.ts';
export { createTokenCache, type TokenCache } from './tokens.ts';
