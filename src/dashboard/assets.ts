// The dashboard's static files: a fixed list read once, served with strict security headers.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const types: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};

/**
 * Where the files are: beside the bundle in the artifact (dist/src/dashboard/static, copied by
 * scripts/package.js), or in the sources when run from the compiled tree (dist/src/dashboard).
 */
function folder(): string {
  const candidates = [
    resolve(__dirname, '../dashboard/static'),
    resolve(__dirname, '../../../src/dashboard/static'),
  ];
  const found = candidates.find((c) => existsSync(resolve(c, 'index.html')));
  if (!found) throw new Error(`dashboard assets not found (looked in ${candidates.join(', ')})`);
  return found;
}

let cache: Map<string, Buffer> | undefined;

/** The asset by name, or undefined: only the listed names are served, never a path. */
export function asset(name: string): { body: Buffer; contentType: string } | undefined {
  // Own names only: `constructor` or `__proto__` are on every object's prototype chain.
  if (!Object.hasOwn(types, name)) return undefined;
  const contentType = types[name]!;
  cache ??= new Map(Object.keys(types).map((n) => [n, readFileSync(resolve(folder(), n))]));
  return { body: cache.get(name)!, contentType };
}

/**
 * Headers on every dashboard response: no inline script or style, no framing (clickjacking), no
 * sniffing, no referrer. `connect` adds the sign-in authority the browser redeems its code at.
 */
export function securityHeaders(connect: string[] = []): Record<string, string> {
  const csp = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    ["connect-src 'self'", ...connect].join(' '),
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
  return {
    'content-security-policy': csp,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
  };
}
