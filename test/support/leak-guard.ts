/**
 * Fails a test file that leaves a pool, app, server or process open: every
 * resource a helper opens registers here and must be closed by the file.
 */
import { afterAll } from 'vitest';

const open = new Map<object, string>();

export function trackResource(resource: object, description: string): void {
  open.set(resource, description);
}

export function releaseResource(resource: object): void {
  open.delete(resource);
}

afterAll(() => {
  const leaked = [...open.values()];
  open.clear();
  if (leaked.length > 0) throw new Error(`test file leaked open resources: ${leaked.join(', ')}`);
});
