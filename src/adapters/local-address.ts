// What counts as "this machine": the one place that decides when plain HTTP (Azurite) or a Key Vault
// fake's relaxed challenge check may be allowed. A host name is compared whole, so
// `localhost.evil.example` or `127.0.0.1.nip.io` is never local.
import { isIPv4 } from 'node:net';

/** 127.0.0.0/8, ::1 or localhost (the host part of a URL, with or without IPv6 brackets). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (host === 'localhost' || host === '::1') return true;
  return isIPv4(host) && host.split('.')[0] === '127';
}

export function isLoopbackUrl(url: string): boolean {
  try {
    return isLoopbackHost(new URL(url).hostname);
  } catch {
    return false;
  }
}

/**
 * Whether a storage connection string points at this machine only (Azurite): `UseDevelopmentStorage=true`
 * alone, or explicit endpoints that are all loopback URLs. Anything else keeps HTTPS required.
 */
export function storageIsLocal(connectionString: string): boolean {
  const parts = new Map<string, string>();
  for (const segment of connectionString.split(';')) {
    const at = segment.indexOf('=');
    if (at > 0) parts.set(segment.slice(0, at).trim().toLowerCase(), segment.slice(at + 1).trim());
  }
  if (parts.get('usedevelopmentstorage')?.toLowerCase() === 'true')
    return !parts.has('developmentstorageproxyuri');
  const endpoints = ['blobendpoint', 'queueendpoint', 'tableendpoint']
    .map((k) => parts.get(k))
    .filter((v): v is string => v !== undefined);
  return endpoints.length > 0 && endpoints.every(isLoopbackUrl);
}
