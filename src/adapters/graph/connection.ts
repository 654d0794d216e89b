// One Graph client per connection (tenant): endpoints per cloud, the app's certificate from Key Vault
// (as a PEM secret) or a PEM file, ClientCertificateCredential, and the immutable-id preference.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ClientCertificateCredential, type TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { Client, MiddlewareFactory, type Context, type Middleware } from '@microsoft/microsoft-graph-client';
import { TokenCredentialAuthenticationProvider } from '@microsoft/microsoft-graph-client/authProviders/azureTokenCredentials';
import type { Connection } from '../../sync/config/schema';
import type { GraphTraffic } from '../../sync/runs';
import { isLoopbackUrl } from '../local-address';

export const clouds = {
  global: {
    authorityHost: 'https://login.microsoftonline.com',
    graphEndpoint: 'https://graph.microsoft.com',
    exchange: 'https://outlook.office365.com',
  },
  usgov: {
    authorityHost: 'https://login.microsoftonline.us',
    graphEndpoint: 'https://graph.microsoft.us',
    exchange: 'https://outlook.office365.us',
  },
  usgovdod: {
    authorityHost: 'https://login.microsoftonline.us',
    graphEndpoint: 'https://dod-graph.microsoft.us',
    exchange: 'https://webmail.apps.mil',
  },
  china: {
    authorityHost: 'https://login.chinacloudapi.cn',
    graphEndpoint: 'https://microsoftgraph.chinacloudapi.cn',
    exchange: 'https://partner.outlook.cn',
  },
} as const;

/** Exchange Online's admin endpoint root and its token audience (the cloud's, whatever the root). */
export function exchangeEndpointsOf(c: Connection): { endpoint: string; resource: string } {
  const resource = clouds[c.cloud].exchange;
  return { endpoint: (c.exchangeEndpoint ?? resource).replace(/\/$/, ''), resource };
}

const knownAuthorities = new Set(Object.values(clouds).map((c) => new URL(c.authorityHost).host));
const knownGraphHosts = new Set(Object.values(clouds).map((c) => new URL(c.graphEndpoint).host));

export interface Endpoints {
  authorityHost: string;
  graphEndpoint: string;
}

export function endpointsOf(c: Connection): Endpoints {
  if (c.authorityHost && c.graphEndpoint)
    return {
      authorityHost: c.authorityHost.replace(/\/$/, ''),
      graphEndpoint: c.graphEndpoint.replace(/\/$/, ''),
    };
  return clouds[c.cloud];
}

export interface CertificatePem {
  pem: string;
  /** The Key Vault secret version, or the file's path; changes when the certificate is renewed. */
  version: string;
}

/**
 * Reads the app certificate: a Key Vault secret (PEM, managed identity) or a PEM file. Without a
 * version, Key Vault's newest; rotation pins the version registered on the application.
 */
export async function loadCertificate(
  c: Connection,
  vaultCredential: () => TokenCredential,
  vaultOptions: { disableChallengeResourceVerification?: boolean } = {},
  version?: string,
): Promise<CertificatePem> {
  if ('pemFile' in c.certificate) {
    const pem = await readFile(c.certificate.pemFile, 'utf8');
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
      throw new Error(
        `connections[${c.id}].certificate.pemFile: ${c.certificate.pemFile} holds no private key (PEM with key and certificate expected)`,
      );
    return { pem, version: c.certificate.pemFile };
  }
  const client = secretClient(c.certificate.keyVaultUrl, vaultCredential(), vaultOptions);
  const secret = await client.getSecret(c.certificate.name, version ? { version } : {});
  if (!secret.value || !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(secret.value)) {
    throw new Error(
      `connections[${c.id}].certificate: the Key Vault certificate "${c.certificate.name}" is not readable as PEM; create it with content type application/x-pem-file (see \`cert create\`).`,
    );
  }
  return { pem: secret.value, version: secret.properties.version ?? '' };
}

function secretClient(
  keyVaultUrl: string,
  credential: TokenCredential,
  vaultOptions: { disableChallengeResourceVerification?: boolean },
): SecretClient {
  // The challenge-resource check may be relaxed for a loopback Key Vault fake only, whoever asks.
  const relaxed = vaultOptions.disableChallengeResourceVerification && isLoopbackUrl(keyVaultUrl);
  return new SecretClient(
    keyVaultUrl,
    credential,
    relaxed ? { disableChallengeResourceVerification: true } : {},
  );
}

/** A Key Vault certificate's enabled versions, newest first (metadata only: Key Vault Secrets User may list). */
export async function certificateVersions(
  c: Connection,
  vaultCredential: () => TokenCredential,
  vaultOptions: { disableChallengeResourceVerification?: boolean } = {},
): Promise<string[]> {
  if (!('keyVaultUrl' in c.certificate)) return [];
  const client = secretClient(c.certificate.keyVaultUrl, vaultCredential(), vaultOptions);
  const found: { version: string; created: number }[] = [];
  for await (const p of client.listPropertiesOfSecretVersions(c.certificate.name))
    if (p.enabled !== false && p.version)
      found.push({ version: p.version, created: p.createdOn?.getTime() ?? 0 });
  return found.sort((a, b) => b.created - a.created).map((v) => v.version);
}

/** The public part of a PEM certificate: what addKey uploads and what expiry checks read. */
export interface CertificateFacts {
  /** Base64 DER of the certificate (keyCredential.key). */
  derBase64: string;
  /** base64url SHA-1 of the DER (the JWT x5t header). */
  x5t: string;
  /** Hex SHA-1 thumbprint, as the portal shows it. */
  thumbprint: string;
  notAfter: Date;
}

export function certificateFacts(pem: string): CertificateFacts {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (!block) throw new Error('the PEM holds no certificate');
  const cert = new X509Certificate(block);
  return {
    derBase64: cert.raw.toString('base64'),
    x5t: createHash('sha1').update(cert.raw).digest('base64url'),
    thumbprint: createHash('sha1').update(cert.raw).digest('hex').toUpperCase(),
    notAfter: new Date(cert.validTo),
  };
}

/** Key roll-over needs the application's object id (the proof's issuer) and a Key Vault certificate. */
export function rotationEnabled(c: Connection): boolean {
  return Boolean(c.applicationObjectId) && 'keyVaultUrl' in c.certificate;
}

export function createCredential(c: Connection, certificate: CertificatePem): ClientCertificateCredential {
  const { authorityHost } = endpointsOf(c);
  return new ClientCertificateCredential(
    c.tenantId,
    c.clientId,
    { certificate: certificate.pem },
    { authorityHost, disableInstanceDiscovery: !knownAuthorities.has(new URL(authorityHost).host) },
  );
}

// One Graph client serves every invocation a host runs at once; each invocation's tally lives in its
// own async context, so concurrent mailbox passes never count each other's requests.
const invocationTraffic = new AsyncLocalStorage<GraphTraffic>();

/** Runs `work`, counting the Graph requests and 429s it sends through a RequestCounter. */
export async function countGraphTraffic<T>(
  work: () => Promise<T>,
): Promise<{ value: T; traffic: GraphTraffic }> {
  const traffic: GraphTraffic = { requests: 0, throttled: 0 };
  try {
    const value = await invocationTraffic.run(traffic, work);
    return { value, traffic };
  } catch (e) {
    // The failed attempt's traffic still happened: the caller records it with the retry.
    if (e instanceof Error) Object.assign(e, { graphTraffic: { ...traffic } });
    throw e;
  }
}

/** The current invocation's Graph traffic so far (a copy); undefined outside countGraphTraffic. */
export function graphTrafficSoFar(): GraphTraffic | undefined {
  const tally = invocationTraffic.getStore();
  return tally ? { ...tally } : undefined;
}

/** Graph traffic as the service counts it: HTTP calls, and requests with each $batch sub-request on its own. */
export class RequestCounter implements Middleware {
  httpCalls = 0;
  graphRequests = 0;
  private next: Middleware | undefined;

  async execute(context: Context): Promise<void> {
    this.httpCalls++;
    // RequestInfo and RequestInit are DOM types this project does not compile against.
    const request = context.request as unknown;
    const requestUrl = (request as { url?: unknown }).url;
    const url = typeof request === 'string' ? request : typeof requestUrl === 'string' ? requestUrl : '';
    const body = (context.options as { body?: unknown } | undefined)?.body;
    const requests = /\/\$batch(\?|$)/.test(url) && typeof body === 'string' ? batchSize(body) : 1;
    this.graphRequests += requests;
    const tally = invocationTraffic.getStore();
    if (tally) tally.requests += requests;
    await this.next!.execute(context);
    // A 429 on the HTTP call; one inside a $batch answer is counted where the batch is read.
    if (tally && context.response?.status === 429) tally.throttled++;
  }

  setNext(next: Middleware): void {
    this.next = next;
  }
}

function batchSize(body: string): number {
  try {
    return (JSON.parse(body) as { requests?: unknown[] }).requests?.length ?? 0;
  } catch {
    return 1;
  }
}

/** Counts a 429 found inside a $batch answer into the current invocation's traffic. */
export function countThrottledInBatch(): void {
  const tally = invocationTraffic.getStore();
  if (tally) tally.throttled++;
}

export function createGraphClient(
  c: Connection,
  credential: TokenCredential,
  counter?: RequestCounter,
): Client {
  const { graphEndpoint } = endpointsOf(c);
  const host = new URL(graphEndpoint).hostname;
  const authProvider = new TokenCredentialAuthenticationProvider(credential, {
    scopes: [`${graphEndpoint}/.default`],
  });
  // The default chain (auth, retry, redirect, telemetry, HTTP), with the counter just before HTTP so
  // retries count too.
  const chain = MiddlewareFactory.getDefaultMiddlewareChain(authProvider);
  // Always installed: each invocation's Graph traffic is counted through it (issue 19).
  chain.splice(chain.length - 1, 0, counter ?? new RequestCounter());
  return Client.initWithMiddleware({
    middleware: chain,
    baseUrl: graphEndpoint,
    defaultVersion: 'v1.0',
    // The client only sends its token to Graph hosts it knows, or to these.
    ...(knownGraphHosts.has(new URL(graphEndpoint).host) ? {} : { customHosts: new Set([host]) }),
  });
}
