/**
 * core — small pure pieces every module may use: prefixed ids, the error
 * vocabulary, canonical JSON. No I/O, no imports from other src folders.
 */
export { newId, isId, ID_PREFIXES, type IdKind } from './ids.ts';
export { DomainError, ERROR_STATUS, notFound, forbidden, type ErrorCode, type FieldError } from './errors.ts';
export { canonicalJson, sha256Hex } from './canonical-json.ts';
export { isStorableText, UNSTORABLE_TEXT_MESSAGE } from './storable-text.ts';
