/**
 * Roles and what they may do. Access is granted only by being listed here:
 * a permission names every role that holds it, and anything unlisted is denied.
 */
import { z } from 'zod';

export const ORG_ROLES = ['viewer', 'operator', 'admin'] as const;
export const PLATFORM_ROLES = ['support', 'platform_admin'] as const;
export const Role = z.enum([...ORG_ROLES, ...PLATFORM_ROLES]);
export type Role = z.infer<typeof Role>;
export const OrgRole = z.enum(ORG_ROLES);
export type OrgRole = z.infer<typeof OrgRole>;

export const PERMISSIONS = {
  /** Read signals, the stream and (later) directives, executions, policies. */
  'org:read': ['viewer', 'operator', 'admin', 'support', 'platform_admin'],
  /** Emit signals; approve, reject and cancel directives. */
  'org:operate': ['operator', 'admin', 'platform_admin'],
  /** Keys, installations, policies, secrets. */
  'org:admin': ['admin', 'platform_admin'],
  /** Replays (a later issue). */
  'org:replay': ['admin', 'support', 'platform_admin'],
  /** Scrape `/metrics`: platform-wide figures, so platform keys only. */
  'platform:observe': ['support', 'platform_admin'],
  /** Create organizations. */
  'platform:admin': ['platform_admin'],
  /** Any valid key: the package registry and similar shared reads. */
  authenticated: ['viewer', 'operator', 'admin', 'support', 'platform_admin'],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

export function roleHolds(role: Role, permission: Permission): boolean {
  return (PERMISSIONS[permission] as readonly Role[]).includes(role);
}

export function isPlatformRole(role: Role): boolean {
  return (PLATFORM_ROLES as readonly string[]).includes(role);
}
