// Credentials on a workstation: Azure CLI / environment / managed identity through
// DefaultAzureCredential, or a service principal secret from the environment (AZURE_TENANT_ID,
// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST) for automation and sovereign or test clouds.
import { ClientSecretCredential, DefaultAzureCredential, type TokenCredential } from '@azure/identity';

const microsoftAuthorities = /(^|\.)(microsoftonline\.com|microsoftonline\.us|chinacloudapi\.cn)$/i;
const microsoftVaults = /\.vault\.(azure\.net|usgovcloudapi\.net|azure\.cn)$/i;

export function cliCredential(env: Record<string, string | undefined> = process.env): TokenCredential {
  const {
    AZURE_TENANT_ID: tenant,
    AZURE_CLIENT_ID: client,
    AZURE_CLIENT_SECRET: secret,
    AZURE_AUTHORITY_HOST: authority,
  } = env;
  if (tenant && client && secret) {
    const host = authority ? new URL(authority).hostname : 'login.microsoftonline.com';
    return new ClientSecretCredential(tenant, client, secret, {
      ...(authority ? { authorityHost: authority } : {}),
      disableInstanceDiscovery: !microsoftAuthorities.test(host),
    });
  }
  return new DefaultAzureCredential();
}

/** A vault outside Azure's domains (a local fake) cannot pass the SDK's challenge-resource check. */
export function vaultOptions(vaultUrl: string): { disableChallengeResourceVerification?: boolean } {
  return microsoftVaults.test(new URL(vaultUrl).hostname)
    ? {}
    : { disableChallengeResourceVerification: true };
}
