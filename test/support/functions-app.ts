// The Functions app wired to Azurite, the simulator and its Key Vault fake, driven by the local runner.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { App, setApp } from '../../src/app/composition';
import { runPolicyNow } from '../../src/functions/http-api';
import { policyRunHandler } from '../../src/functions/policy-runs';
import { parseSettings } from '../../src/app/settings';
import type { PolicyInput } from '../../src/sync/config/schema';
import type { SimUser } from '../doubles/graph-tenant-simulator/tenant';
import { LocalRunner, defaultRunnerOptions } from '../../dev/local-runner';
import type { GraphTenantSimulator, SimulatorOptions } from '../doubles/graph-tenant-simulator/simulator';
import { hostCredential, simulatorConnection, startSimulator } from './clients';
import { startAzurite, type AzuriteHandle } from '../../dev/azurite';
import { orClose, startAll } from './start-all';

export interface FunctionsFixture {
  sim: GraphTenantSimulator;
  azurite: AzuriteHandle;
  app: App;
  runner: LocalRunner;
  logs: string[];
  writePolicies(policies: PolicyInput[]): void;
  /** Moves the app's clock forward (past the one-minute answers of preview and health, say). */
  advanceClock(ms: number): void;
  /**
   * Starts a run of `policyId` over the HTTP API (`body` as its POST body) and fans it out through the
   * policy-run handler, leaving its mailbox messages queued; returns the run id.
   */
  startedRun(policyId: string, body?: unknown): Promise<string>;
  close(): Promise<void>;
}

export async function functionsFixture(options: {
  sim?: SimulatorOptions;
  env?: Record<string, string>;
  policies: (sim: GraphTenantSimulator) => PolicyInput[];
  /** Fields added to the connection (exchangeAdmin; applicationObjectId for certificate rotation). */
  connection?: Record<string, unknown> | ((sim: GraphTenantSimulator) => Record<string, unknown>);
  /** The app's clock before `advanceClock` moves it (rotation tests jump days ahead). */
  now?: () => Date;
}): Promise<FunctionsFixture> {
  const started = await startAll(startSimulator(options.sim ?? {}), startAzurite());
  const [sim, azurite] = started;
  return orClose(started, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policies-'));
    const policyFile = join(dir, 'policies.json');
    const extraConnection =
      typeof options.connection === 'function' ? options.connection(sim) : options.connection;
    const writePolicies = (policies: PolicyInput[]): void =>
      writeFileSync(
        policyFile,
        JSON.stringify({
          connections: [{ ...simulatorConnection(sim, 'contoso', 'keyVault'), ...extraConnection }],
          policies,
        }),
      );
    writePolicies(options.policies(sim));
    const settings = parseSettings({
      AzureWebJobsStorage: azurite.connectionString,
      POLICY_FILE: policyFile,
      CERTIFICATE_CHECK_MINUTES: '0',
      ...options.env,
    });
    let offsetMs = 0;
    const app = new App({
      settings,
      credential: hostCredential(sim),
      disableChallengeResourceVerification: true,
      now: () => new Date((options.now?.() ?? new Date()).getTime() + offsetMs),
    });
    setApp(app);
    await app.ensureStorage();
    const logs: string[] = [];
    const runner = new LocalRunner(app, {
      ...defaultRunnerOptions,
      visibilityTimeoutSeconds: 60,
      log: (level, line) => logs.push(`${level}: ${line}`),
    });
    return {
      sim,
      azurite,
      app,
      runner,
      logs,
      writePolicies,
      advanceClock: (ms) => (offsetMs += ms),
      startedRun: (policyId, body = {}) => startedRun(app, policyId, body),
      close: async () => {
        setApp(undefined);
        await Promise.all([sim.close(), azurite.close()]);
      },
    };
  });
}

const invocation = (): InvocationContext =>
  new InvocationContext({ invocationId: `t-${Math.random()}`, functionName: 'test' });

async function startedRun(app: App, policyId: string, body: unknown): Promise<string> {
  const res = await runPolicyNow(
    new HttpRequest({
      url: `http://127.0.0.1:7071/api/policies/${policyId}/runs`,
      method: 'POST',
      params: { policyId },
      body: { string: JSON.stringify(body) },
    }),
    invocation(),
  );
  if (res.status !== 202)
    throw new Error(`run of ${policyId}: ${res.status} ${JSON.stringify(res.jsonBody)}`);
  const q = app.queues.policyRuns;
  const got = await q.receiveMessages({ numberOfMessages: 1, visibilityTimeout: 60 });
  const m = got.receivedMessageItems[0]!;
  await policyRunHandler(JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')), invocation());
  await q.deleteMessage(m.messageId, m.popReceipt);
  return (res.jsonBody as { runId: string }).runId;
}

/** A directory policy on the fixture's `contoso` connection that targets `targets`, in "Folder <id>". */
export const usersPolicy = (
  id: string,
  targets: SimUser[],
  extra: Partial<PolicyInput> = {},
): PolicyInput => ({
  id,
  name: id,
  connection: 'contoso',
  source: { type: 'directory' },
  targets: { type: 'users', users: targets.map((u) => u.userPrincipalName) },
  folder: { name: `Folder ${id}` },
  ...extra,
});
