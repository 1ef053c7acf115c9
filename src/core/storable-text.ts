/**
 * Text PostgreSQL cannot keep as sent: NUL (refused in text and jsonb) and
 * unpaired UTF-16 surrogates (refused in jsonb — a 500 if it reaches the
 * insert — and silently replaced by U+FFFD in text). Input schemas refuse it
 * so the caller gets a 422 naming the field.
 */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Cheap first pass, on the emit path: most text has no NUL and no surrogate at all. */
const MAYBE_UNSTORABLE = /[\u0000\uD800-\uDFFF]/;

export const isStorableText = (text: string): boolean => !(MAYBE_UNSTORABLE.test(text) && UNSTORABLE.test(text));

export const UNSTORABLE_TEXT_MESSAGE = 'must not contain NUL characters or unpaired surrogates';
