// Credentials on a workstation: Azure CLI / environment / managed identity through
// DefaultAzureCredential, or a service principal secret from the environment (AZURE_TENANT_ID,
// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST) for automation and sovereign or test clouds.
import { ClientSecretCredential, DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { isLoopbackUrl } from '../adapters/local-address';

const microsoftAuthorities = /(^|\.)(microsoftonline\.com|microsoftonline\.us|chinacloudapi\.cn)$/i;

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

/**
 * Key Vault client options. The SDK's challenge-resource check stays on: it refuses to send a token
 * to a vault whose 401 challenge names another resource (a policy file naming `https://evil.example`
 * would otherwise receive the admin's token for, say, Azure Resource Manager). Tests and the demo run
 * a local Key Vault fake that cannot pass the check; only they set CONTACTSYNC_LOCAL_KEY_VAULT=allow,
 * and even then only a loopback vault is exempt.
 */
export function vaultOptions(
  vaultUrl: string,
  env: Record<string, string | undefined> = process.env,
): { disableChallengeResourceVerification?: boolean } {
  return env.CONTACTSYNC_LOCAL_KEY_VAULT === 'allow' && isLoopbackUrl(vaultUrl)
    ? { disableChallengeResourceVerification: true }
    : {};
}
