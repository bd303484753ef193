/**
 * The web dashboard's files, served by the API's own server. Every route here is declared public
 * (`config: { public: true }`) one by one: the page at each client route, its hashed assets and the
 * icon. Nothing here is under /v1, and the server refuses to start if a public route is (server.ts).
 * The data the page shows comes only from /v1, with the token the user signs in with.
 */
import fastifyStatic from '@fastify/static';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLIENT_ROUTES } from '../web/index.ts';
import type { Api } from './context.ts';

export interface DashboardOptions {
  /** The build output of the dashboard (dist/web), with index.html and assets/. */
  dir: string;
}

/**
 * Scripts, styles, images and API calls from this origin only; no inline script or style, no
 * plugin, no framing, no form posting anywhere. React sets styles through the CSSOM, which
 * `style-src 'self'` allows.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Hashed file names change with their content, so a browser may keep them for good. */
const ASSET_MAX_AGE_MS = 365 * 24 * 3600 * 1000;

const PAGE_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  // The page names the current assets: it must be revalidated on every load, or a browser would
  // keep asking for the assets of an old build.
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
} as const;

const notBuilt = (dir: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vipdip — dashboard not built</title></head>
<body><h1>The vipdip dashboard is not built</h1>
<p>The server found no <code>index.html</code> in <code>${escapeHtml(dir)}</code>.
Build it with <code>npm run build:web</code> (<code>npm ci</code> runs it) and reload this page.</p>
<p>The API under <code>/v1</code> works meanwhile.</p></body></html>
`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** True when the dashboard's page exists in `dir`, so `vipdip up` can say so at start. */
export function dashboardBuilt(dir: string): boolean {
  return existsSync(join(dir, 'index.html'));
}

export async function registerDashboard(app: Api, opts: DashboardOptions): Promise<void> {
  const indexFile = join(opts.dir, 'index.html');
  // Read once found; until then looked for on every request, so a build made while the server runs
  // shows up on the next reload.
  let page: string | undefined;
  const loadPage = () => {
    if (page === undefined && existsSync(indexFile)) page = readFileSync(indexFile, 'utf8');
    return page;
  };
  loadPage();

  // Only sendFile is used; the routes are declared below, where their public flag can be read.
  await app.register(fastifyStatic, { root: join(opts.dir, 'assets'), serve: false, index: false });

  const open = { schema: { hide: true }, config: { public: true } } as const;
  for (const path of new Set(Object.values(CLIENT_ROUTES))) {
    app.get(path, open, (_req, reply) => {
      const html = loadPage();
      void reply.headers(PAGE_HEADERS).type('text/html; charset=utf-8');
      // 503: the server is fine, but this part of it cannot answer until the build exists.
      return html === undefined ? reply.code(503).send(notBuilt(opts.dir)) : reply.send(html);
    });
  }
  app.get('/assets/*', open, (req, reply) => {
    const file = (req.params as { '*': string })['*'];
    void reply.header('x-content-type-options', 'nosniff');
    return reply.sendFile(file, join(opts.dir, 'assets'), {
      immutable: true,
      maxAge: ASSET_MAX_AGE_MS,
      dotfiles: 'deny',
    });
  });
  app.get('/favicon.svg', open, (_req, reply) => {
    void reply.header('x-content-type-options', 'nosniff');
    return reply.sendFile('favicon.svg', opts.dir, { maxAge: 24 * 3600 * 1000 });
  });
}
