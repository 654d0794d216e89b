// The Functions app with certificate rotation on, as the rotation tests share it: the connection
// "contoso" names the simulator's Key Vault certificate and the key on its application, and one
// policy "gal" syncs the directory to every mailbox. The test owns the clock (`now`).
import { HttpRequest, InvocationContext } from '@azure/functions';
import { healthCheck } from '../../src/functions/http-api';
import type { PolicyInput } from '../../src/sync/config/schema';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import { functionsFixture, type FunctionsFixture } from './functions-app';

/** A logger for the rotation use case that prints nothing. */
export const quietLogger = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} } as never;

export function rotationFixture(options: {
  users: number;
  mailboxes: number;
  now: () => Date;
  /** Fields added to the policy "gal" (notify, say). */
  policy?: (sim: GraphTenantSimulator) => Partial<PolicyInput>;
}): Promise<FunctionsFixture> {
  return functionsFixture({
    sim: { seed: { generate: { users: options.users, mailboxes: options.mailboxes, awkward: false } } },
    connection: (sim) => ({
      applicationObjectId: sim.applicationObjectId,
      certificate: { keyVaultUrl: sim.keyVaultUrl, name: sim.certificateName, keyId: sim.initialKeyId },
    }),
    now: options.now,
    policies: (sim) => [
      {
        id: 'gal',
        name: 'Directory',
        connection: 'contoso',
        source: { type: 'directory' },
        targets: { type: 'allMailboxes' },
        folder: { name: 'Company Directory' },
        schedule: '0 0 */4 * * *',
        ...options.policy?.(sim),
      },
    ],
  });
}

/** The rotation row of the connection "contoso". */
export async function rotationState(f: FunctionsFixture) {
  return (await f.app.rotationStore.get('contoso'))!.state;
}

export interface ExpiryCheck {
  ok: boolean;
  warning?: boolean;
  detail: string;
  fix?: string;
}

/** The "certificate expiry" line of GET /api/health for the first connection. */
export async function certificateExpiryCheck(): Promise<ExpiryCheck> {
  const health = await healthCheck(
    new HttpRequest({ url: 'http://127.0.0.1/api/health', method: 'GET' }),
    new InvocationContext({ invocationId: 't', functionName: 'health' }),
  );
  const body = health.jsonBody as { connections: { checks: (ExpiryCheck & { name: string })[] }[] };
  return body.connections[0]!.checks.find((c) => c.name === 'certificate expiry')!;
}
