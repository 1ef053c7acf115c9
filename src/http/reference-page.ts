/**
 * The interactive API reference at /docs: Swagger UI served from the
 * installed swagger-ui-dist package, so the page loads nothing from another
 * origin and works on a machine without internet. The page's own script is a
 * file too, which lets the CSP refuse every inline script.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Hono } from 'hono';

const require = createRequire(import.meta.url);
const distDirectory = path.dirname(require.resolve('swagger-ui-dist/package.json'));

export const REFERENCE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // Swagger UI sets style attributes on its elements.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const INITIALIZER = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#reference', deepLinking: true, persistAuthorization: false });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>signalbus API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<main id="reference"></main>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/reference.js"></script>
</body>
</html>
`;

/** The files the page loads, by name: nothing else under the package is served. */
const ASSETS: Record<string, { file?: string; body?: string; type: string }> = {
  'swagger-ui-bundle.js': { file: 'swagger-ui-bundle.js', type: 'text/javascript; charset=utf-8' },
  'swagger-ui.css': { file: 'swagger-ui.css', type: 'text/css; charset=utf-8' },
  'favicon-32x32.png': { file: 'favicon-32x32.png', type: 'image/png' },
  'reference.js': { body: INITIALIZER, type: 'text/javascript; charset=utf-8' },
};

const loaded = new Map<string, Promise<Uint8Array<ArrayBuffer> | string>>();

function assetBody(name: string): Promise<Uint8Array<ArrayBuffer> | string> {
  let body = loaded.get(name);
  if (!body) {
    const asset = ASSETS[name]!;
    // Copied once into a plain Uint8Array, the body type hono takes, rather than on every request.
    body = asset.body !== undefined ? Promise.resolve(asset.body) : readFile(path.join(distDirectory, asset.file!)).then((file) => new Uint8Array(file));
    loaded.set(name, body);
  }
  return body;
}

export function registerReferencePage(app: Hono<any>): void {
  app.get('/docs', (c) => {
    c.header('Content-Security-Policy', REFERENCE_CSP);
    return c.html(PAGE);
  });
  app.get('/docs/assets/:name', async (c) => {
    const name = c.req.param('name');
    if (!Object.hasOwn(ASSETS, name)) return c.notFound();
    c.header('Content-Type', ASSETS[name]!.type);
    c.header('Cache-Control', 'public, max-age=3600');
    c.header('Content-Security-Policy', REFERENCE_CSP);
    return c.body(await assetBody(name));
  });
}
