/**
 * The console's stylesheet and script, served from this process (the CSP
 * allows no other origin). Read once, on first request.
 */
import { readFile } from 'node:fs/promises';
import type { Hono } from 'hono';
import type { ConsoleEnv } from './guard.ts';

const ASSETS: Record<string, string> = {
  'console.css': 'text/css; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
};

const loaded = new Map<string, Promise<string>>();

export function registerConsoleAssets(app: Hono<ConsoleEnv>): void {
  app.get('/assets/:name', async (c) => {
    const name = c.req.param('name');
    if (!Object.hasOwn(ASSETS, name)) return c.notFound();
    let body = loaded.get(name);
    if (!body) {
      body = readFile(new URL(`./assets/${name}`, import.meta.url), 'utf8');
      loaded.set(name, body);
    }
    c.header('Content-Type', ASSETS[name]!);
    c.header('Cache-Control', 'public, max-age=300');
    return c.body(await body);
  });
}
