// Builds the real SDK clients against the Graph tenant simulator, as the product will.
import { ClientCertificateCredential, ClientSecretCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { CertificateClient } from '@azure/keyvault-certificates';
import { Client } from '@microsoft/microsoft-graph-client';
import { TokenCredentialAuthenticationProvider } from '@microsoft/microsoft-graph-client/authProviders/azureTokenCredentials';
import type { z } from 'zod';
import { GraphTenantSimulator, type SimulatorOptions } from '../doubles/graph-tenant-simulator/simulator';
import type { connectionSchema } from '../../src/sync/config/schema';

export async function startSimulator(options: SimulatorOptions = {}): Promise<GraphTenantSimulator> {
  const sim = await GraphTenantSimulator.start({ latency: { meanMs: 0, jitterMs: 0 }, ...options });
  sim.trustInProcess();
  return sim;
}

/** A policy-file connection to the simulator's tenant; its certificate from a PEM file or the Key Vault fake. */
export function simulatorConnection(
  sim: GraphTenantSimulator,
  id: string,
  certificate: 'pemFile' | 'keyVault',
): z.input<typeof connectionSchema> {
  return {
    id,
    tenantId: sim.tenantId,
    clientId: sim.clientId,
    certificate:
      certificate === 'pemFile'
        ? { pemFile: sim.certificatePath }
        : { keyVaultUrl: sim.keyVaultUrl, name: sim.certificateName },
    authorityHost: sim.authorityHost,
    graphEndpoint: sim.graphUrl,
    // Used only when a test sets exchangeAdmin: the simulator serves Exchange's admin endpoint too.
    exchangeEndpoint: sim.graphUrl,
  };
}

export function appCredential(sim: GraphTenantSimulator): ClientCertificateCredential {
  return new ClientCertificateCredential(
    sim.tenantId,
    sim.clientId,
    { certificatePath: sim.certificatePath },
    { authorityHost: sim.authorityHost, disableInstanceDiscovery: true },
  );
}

export function graphClient(sim: GraphTenantSimulator): Client {
  const provider = new TokenCredentialAuthenticationProvider(appCredential(sim), {
    scopes: [`${sim.graphUrl}/.default`],
  });
  const client = Client.initWithMiddleware({
    baseUrl: sim.graphUrl,
    customHosts: new Set(['127.0.0.1']),
    authProvider: provider,
    defaultVersion: 'v1.0',
  });
  return client;
}

export function hostCredential(sim: GraphTenantSimulator): ClientSecretCredential {
  return new ClientSecretCredential(sim.tenantId, sim.hostIdentity.clientId, sim.hostIdentity.clientSecret, {
    authorityHost: sim.authorityHost,
    disableInstanceDiscovery: true,
  });
}

export function secretClient(sim: GraphTenantSimulator): SecretClient {
  return new SecretClient(sim.keyVaultUrl, hostCredential(sim), {
    disableChallengeResourceVerification: true,
  });
}

export function certificateClient(sim: GraphTenantSimulator): CertificateClient {
  return new CertificateClient(sim.keyVaultUrl, hostCredential(sim), {
    disableChallengeResourceVerification: true,
  });
}

/** A raw HTTPS call with a token of the sync app (for status codes and headers the SDK hides). */
export async function rawGraph(
  sim: GraphTenantSimulator,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const token = await appCredential(sim).getToken(`${sim.graphUrl}/.default`);
  const res = await fetch(`${sim.graphUrl}/v1.0${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token.token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* binary or empty */
  }
  return { status: res.status, headers: res.headers, body: parsed };
}
