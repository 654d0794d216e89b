// DEV TOOL: the demo's world, started in one call: Azurite (in memory), the Graph tenant simulator with
// a generated tenant, a policy file, the App, the local runner and the HTTP bridge (API and
// dashboard). `npm run demo` and the dashboard's browser test both start it.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientSecretCredential } from '@azure/identity';
import { App, setApp } from '../src/app/composition';
import { parseSettings } from '../src/app/settings';
import { GraphTenantSimulator } from '../test/doubles/graph-tenant-simulator/simulator';
import { simulatorConnection } from '../test/support/clients';
import { startAzurite } from './azurite';
import { LocalRunner, defaultRunnerOptions } from './local-runner';
import { startHttpBridge } from './http-bridge';

export interface DemoOptions {
  users: number;
  mailboxes: number;
  latency: number;
  logFile?: string;
  /** The demo policy's display name (the browser test gives it markup). */
  policyName?: string;
  /** Keep the policy file's folder after close (the demo leaves it, with the report mails, to look at). */
  keepFiles?: boolean;
  say?: (line: string) => void;
}

export interface DemoEnvironment {
  app: App;
  sim: GraphTenantSimulator;
  runner: LocalRunner;
  /** The HTTP bridge's origin; the API is under /api, the dashboard at /api/dashboard/. */
  url: string;
  dashboardUrl: string;
  azuriteConnectionString: string;
  admin: string;
  /** The folder holding the policy file (removed on close unless `keepFiles`). */
  dir: string;
  policyFile: string;
  close(): Promise<void>;
}

export async function startDemoEnvironment(o: DemoOptions): Promise<DemoEnvironment> {
  const say = o.say ?? (() => undefined);
  const cleanups: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  };
  try {
    say('Starting Azurite and the Graph tenant simulator ...');
    const azurite = await startAzurite();
    cleanups.push(() => azurite.close());
    const sim = await GraphTenantSimulator.start({
      seed: { generate: { users: o.users, mailboxes: o.mailboxes, groups: 6, orgContacts: 20 } },
      latency: { meanMs: o.latency, jitterMs: o.latency / 2 },
    });
    cleanups.push(() => sim.close());
    sim.trustInProcess();
    const admin = [...sim.tenant.users.values()].find(
      (u) => u.mailbox === 'user' && u.accountEnabled,
    )!.userPrincipalName;
    say(
      `  simulator: ${sim.tenant.users.size} users, ${[...sim.tenant.users.values()].filter((u) => u.mailbox !== 'none').length} mailboxes, ${sim.tenant.groups.size} groups, ${sim.tenant.orgContacts.size} org contacts at ${sim.graphUrl}`,
    );

    const dir = mkdtempSync(join(tmpdir(), 'contact-sync-demo-'));
    if (!o.keepFiles) cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const policyFile = join(dir, 'policies.json');
    writeFileSync(
      policyFile,
      JSON.stringify(
        {
          connections: [
            {
              ...simulatorConnection(sim, 'demo-tenant', 'keyVault'),
              // The two values the admin copies once; from then on the app rolls its own key.
              applicationObjectId: sim.applicationObjectId,
              certificate: {
                keyVaultUrl: sim.keyVaultUrl,
                name: sim.certificateName,
                keyId: sim.initialKeyId,
              },
            },
          ],
          policies: [
            {
              id: 'company-directory',
              name: o.policyName ?? 'Company directory',
              connection: 'demo-tenant',
              source: { type: 'directory', includeOrgContacts: true },
              targets: { type: 'allMailboxes' },
              folder: { name: 'Company Directory' },
              mapping: { categories: ['Company'] },
              // The old tool's contacts become ours; the ones matching nobody go (a folder it owns).
              options: { unmanagedContacts: 'remove' },
              schedule: '0 0 */4 * * *',
              notify: { recipients: ['it-admins@contoso.example'], sender: admin, when: 'always' },
            },
          ],
        },
        null,
        2,
      ),
    );
    say(`  policy file: ${policyFile}`);
    // The simulator's host identity stands in for the Function App's managed identity (Key Vault).
    const credential = new ClientSecretCredential(
      sim.tenantId,
      sim.hostIdentity.clientId,
      sim.hostIdentity.clientSecret,
      { authorityHost: sim.authorityHost, disableInstanceDiscovery: true },
    );
    const app = new App({
      settings: parseSettings({
        AzureWebJobsStorage: azurite.connectionString,
        POLICY_FILE: policyFile,
        // Local only: the app refuses it in Azure or with storage that is not on this machine.
        DASHBOARD_LOCAL_SIGN_IN: 'true',
      }),
      credential,
      disableChallengeResourceVerification: true,
    });
    setApp(app);
    cleanups.push(() => setApp(undefined));
    await app.ensureStorage();
    // Every line the functions log, for troubleshooting (and for the test that no secret is logged).
    const logFile = o.logFile;
    const runner = new LocalRunner(app, {
      ...defaultRunnerOptions,
      ...(logFile
        ? { log: (level: string, line: string) => appendFileSync(logFile, `${level}: ${line}\n`) }
        : {}),
    });
    const http = await startHttpBridge();
    cleanups.push(() => http.close());
    say(`  functions: timer, 4 queue handlers, HTTP API at ${http.url}/api`);
    return {
      app,
      sim,
      runner,
      url: http.url,
      dashboardUrl: `${http.url}/api/dashboard/`,
      azuriteConnectionString: azurite.connectionString,
      admin,
      dir,
      policyFile,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Keeps the functions running as the host would until `stopped()`: queues polled, the timer ticking
 * every minute (so runs started from the dashboard complete).
 */
export async function serve(env: DemoEnvironment, stopped: () => boolean): Promise<void> {
  let nextTick = Date.now() + 60_000;
  while (!stopped()) {
    if (Date.now() >= nextTick) {
      nextTick = Date.now() + 60_000;
      await env.runner.tick().catch(() => undefined);
    }
    const handled = await env.runner.pollOnce().catch(() => 0);
    if (handled === 0) await new Promise((r) => setTimeout(r, 300));
  }
}
