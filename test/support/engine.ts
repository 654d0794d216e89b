// Wires the real sync engine (Graph adapters, Table stores) to the simulator and Azurite.
import {
  policySchema,
  connectionSchema,
  type Connection,
  type Policy,
  type PolicyInput,
} from '../../src/sync/config/schema';
import { createCredential, createGraphClient, loadCertificate } from '../../src/adapters/graph/connection';
import { GraphDirectoryReader } from '../../src/adapters/graph/directory-reader';
import { GraphMailboxes, defaultBatchTuning, type BatchTuning } from '../../src/adapters/graph/mailbox-graph';
import {
  TableMailboxStore,
  TableSourceStore,
  ensureTable,
  tableNames,
} from '../../src/adapters/tables/table-stores';
import { runPolicy, type RunDependencies, type RunOptions, type RunRecord } from '../../src/sync/run-policy';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import type { SimulatorOptions } from '../doubles/graph-tenant-simulator/simulator';
import type { SimContact } from '../doubles/graph-tenant-simulator/tenant';
import { hostCredential, simulatorConnection, startSimulator } from './clients';
import { startAzurite, type AzuriteHandle } from '../../dev/azurite';
import { orClose, startAll } from './start-all';
import { tagPropertyId } from '../../src/sync/tag';
import { BlobServiceClient } from '@azure/storage-blob';
import { BlobPhotoStore, photoContainerName } from '../../src/adapters/blob/photo-store';

export interface EngineFixture {
  sim: GraphTenantSimulator;
  azurite: AzuriteHandle;
  connection: Connection;
  deps: RunDependencies;
  mailboxes: GraphMailboxes;
  policy(overrides?: Partial<PolicyInput>): Policy;
  run(policy: Policy, options?: RunOptions): Promise<RunRecord>;
  close(): Promise<void>;
}

export async function engineFixture(
  simOptions: SimulatorOptions = {},
  tuning: Partial<BatchTuning> = {},
): Promise<EngineFixture> {
  const started = await startAll(startSimulator(simOptions), startAzurite());
  const [sim, azurite] = started;
  return orClose(started, async () => {
    const connection = connectionSchema.parse(simulatorConnection(sim, 'contoso', 'pemFile'));
    const cert = await loadCertificate(connection, () => hostCredential(sim));
    const client = createGraphClient(connection, createCredential(connection, cert));
    const mailboxes = new GraphMailboxes(client, { ...defaultBatchTuning, fallbackDelayMs: 50, ...tuning });
    const sources = azurite.tableClient(tableNames.sources);
    const mailboxTable = azurite.tableClient(tableNames.mailboxes);
    const photoContainer = BlobServiceClient.fromConnectionString(
      azurite.connectionString,
    ).getContainerClient(photoContainerName);
    await Promise.all([ensureTable(sources), ensureTable(mailboxTable), photoContainer.createIfNotExists()]);
    const deps: RunDependencies = {
      directory: new GraphDirectoryReader(client),
      mailboxes,
      sourceStore: new TableSourceStore(sources),
      mailboxStore: new TableMailboxStore(mailboxTable),
      photoStore: new BlobPhotoStore(photoContainer),
    };
    return {
      sim,
      azurite,
      connection,
      deps,
      mailboxes,
      policy: (overrides = {}) =>
        policySchema.parse({
          id: 'directory',
          name: 'Company directory',
          connection: 'contoso',
          source: { type: 'directory' },
          targets: { type: 'allMailboxes' },
          folder: { name: 'Company Directory' },
          ...overrides,
        }),
      run: (policy, options) => runPolicy(policy, deps, options),
      close: async () => {
        await Promise.all([sim.close(), azurite.close()]);
      },
    };
  });
}

/** The contacts in a mailbox's folder, as the simulator holds them. */
export function folderContacts(
  sim: GraphTenantSimulator,
  upn: string,
  folderName: string | null,
): SimContact[] {
  const mailbox = sim.tenant.mailbox(upn);
  if (!mailbox) return [];
  const folder =
    folderName === null
      ? mailbox.folders.get(mailbox.contactsFolderId)
      : mailbox.folderByName(folderName, mailbox.contactsFolderId);
  return folder ? mailbox.contactsIn(folder.id) : [];
}

export const tagOf = (c: SimContact): string | undefined =>
  c.extendedProperties.get(tagPropertyId.toLowerCase())?.value;

/** Source keys in a folder, and how often each appears (duplicates show as > 1). */
export function tagCounts(contacts: SimContact[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const c of contacts) {
    const t = tagOf(c);
    if (t) m.set(t, (m.get(t) ?? 0) + 1);
  }
  return m;
}
