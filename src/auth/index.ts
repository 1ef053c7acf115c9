/**
 * auth — API keys, roles and who is asking. Owns `public.api_keys`. Secrets
 * exist only in the creating call's answer; the table keeps their sha256.
 * Called by http (authentication, key routes) and cli (keys create).
 */
export { createApiKey, CreateApiKeyInput, revokeApiKey, type ApiKeyView } from './api-keys.ts';
export { createKeyAuthenticator, type KeyAuthenticator, type Principal } from './authenticate.ts';
export { PERMISSIONS, Role, OrgRole, roleHolds, type Permission } from './roles.ts';
