// The composition root: builds every client once per worker (never per request) from the settings.
import { readFile } from 'node:fs/promises';
import { TableClient } from '@azure/data-tables';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { BlobClient, BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { QueueClient } from '@azure/storage-queue';
import type { Client } from '@microsoft/microsoft-graph-client';
import { parsePolicyFile, type LoadedPolicyFile } from '../sync/config/policy-file';
import type { Connection, Policy } from '../sync/config/schema';
import {
  createCredential,
  createGraphClient,
  type CertificatePem,
  type RequestCounter,
} from '../adapters/graph/connection';
import { GraphDirectoryReader } from '../adapters/graph/directory-reader';
import { ExchangeRecipientReader, exchangeRecipients } from '../adapters/exchange/recipient-reader';
import { GraphMailboxes } from '../adapters/graph/mailbox-graph';
import {
  TableMailboxStore,
  TableSourceStore,
  ensureTable,
  tableNames,
} from '../adapters/tables/table-stores';
import { TableRunStore } from '../adapters/tables/run-store';
import { markIndexedWhenEmpty } from '../adapters/tables/run-index';
import { MailboxLocks } from '../adapters/tables/mailbox-locks';
import { RotationStore } from '../adapters/tables/rotation-store';
import { chooseSigningCertificate } from './cert-rotation';
import { PolicyRegistry } from '../adapters/tables/policy-registry';
import { BlobPhotoStore, photoContainerName } from '../adapters/blob/photo-store';
import { maxQueueMessageBytes } from '../sync/messages';
import { storageIsLocal } from '../adapters/local-address';
import { parseSettings, type Settings } from './settings';

export const queueNames = { policyRuns: 'policy-runs', mailboxSyncs: 'mailbox-syncs' } as const;
export type QueueName = (typeof queueNames)[keyof typeof queueNames];

/** Where the use-cases send messages: Azure queues in the Functions app, in-process in the CLI. */
export interface MessageTransport {
  ensure(): Promise<void>;
  send(queue: QueueName, message: unknown, delaySeconds?: number): Promise<void>;
}

export interface ConnectionClients {
  connection: Connection;
  client: Client;
  directory: GraphDirectoryReader;
  mailboxes: GraphMailboxes;
  /** Exchange Online's recipients, when the connection reads them (exchangeAdmin). */
  recipients?: ExchangeRecipientReader;
  credential: TokenCredential;
  certificateVersion: string;
  checkedAt: number;
}

export interface AppOptions {
  settings: Settings;
  /** Credential for Key Vault and storage: the managed identity in Azure. */
  credential: TokenCredential;
  /** Key Vault fakes need this; a real vault does not. */
  disableChallengeResourceVerification?: boolean;
  now?: () => Date;
  /** Default: the storage account's queues. */
  transport?: MessageTransport;
  /** Counts Graph requests (the CLI prints the figure). */
  requestCounter?: RequestCounter;
}

export class App {
  readonly settings: Settings;
  readonly tables: { sources: TableClient; mailboxes: TableClient; runs: TableClient; policies: TableClient };
  readonly queues: { policyRuns: QueueClient; mailboxSyncs: QueueClient };
  readonly sourceStore: TableSourceStore;
  readonly mailboxStore: TableMailboxStore;
  readonly runStore: TableRunStore;
  readonly locks: MailboxLocks;
  readonly rotationStore: RotationStore;
  /** Policies the app has run, so one deleted from the file is noticed and cleaned up. */
  readonly policyRegistry: PolicyRegistry;
  /** Contact photos by hash; undefined without a blob endpoint (a policy with photos then fails clearly). */
  readonly photoStore: BlobPhotoStore | undefined;
  private readonly photoContainer: ContainerClient | undefined;
  readonly now: () => Date;
  private readonly connections = new Map<string, Promise<ConnectionClients>>();
  private policyCache: { at: number; value: Promise<LoadedPolicyFile> } | undefined;
  private ready: Promise<void> | undefined;
  private readonly transport: MessageTransport;
  private readonly recentAnswers = new Map<string, { at: number; value: Promise<unknown> }>();

  constructor(private readonly options: AppOptions) {
    const s = options.settings;
    this.settings = s;
    this.now = options.now ?? (() => new Date());
    const table = (name: string): TableClient =>
      s.AzureWebJobsStorage
        ? TableClient.fromConnectionString(s.AzureWebJobsStorage, name, {
            allowInsecureConnection: storageIsLocal(s.AzureWebJobsStorage),
          })
        : new TableClient(s.AzureWebJobsStorage__tableServiceUri!, name, options.credential);
    const queue = (name: string): QueueClient => this.queue(name);
    this.tables = {
      sources: table(tableNames.sources),
      mailboxes: table(tableNames.mailboxes),
      runs: table(tableNames.runs),
      policies: table(tableNames.policies),
    };
    this.queues = { policyRuns: queue(queueNames.policyRuns), mailboxSyncs: queue(queueNames.mailboxSyncs) };
    this.sourceStore = new TableSourceStore(this.tables.sources);
    this.mailboxStore = new TableMailboxStore(this.tables.mailboxes);
    this.runStore = new TableRunStore(this.tables.runs, this.tables.policies);
    this.locks = new MailboxLocks(this.tables.mailboxes);
    this.rotationStore = new RotationStore(this.tables.policies);
    this.policyRegistry = new PolicyRegistry(this.tables.policies);
    this.photoContainer = s.AzureWebJobsStorage
      ? BlobServiceClient.fromConnectionString(s.AzureWebJobsStorage).getContainerClient(photoContainerName)
      : s.AzureWebJobsStorage__blobServiceUri
        ? new BlobServiceClient(s.AzureWebJobsStorage__blobServiceUri, options.credential).getContainerClient(
            photoContainerName,
          )
        : undefined;
    this.photoStore = this.photoContainer ? new BlobPhotoStore(this.photoContainer) : undefined;
    this.transport = options.transport ?? {
      ensure: () =>
        Promise.all(
          [
            ...Object.values(this.queues),
            ...Object.values(queueNames).map((n) => this.queue(`${n}-poison`)),
          ].map((q) => q.createIfNotExists()),
        ).then(() => undefined),
      send: (queue, message, delay) =>
        this.enqueue(
          queue === queueNames.policyRuns ? this.queues.policyRuns : this.queues.mailboxSyncs,
          message,
          delay,
        ),
    };
  }

  /** Tables and queues exist (Bicep creates them in Azure; this covers local use). */
  ensureStorage(): Promise<void> {
    this.ready ??= (async () => {
      await Promise.all(Object.values(this.tables).map(ensureTable));
      await markIndexedWhenEmpty(this.tables.runs);
      await this.transport.ensure();
      if (this.settings.AzureWebJobsStorage) await this.photoContainer?.createIfNotExists();
    })();
    return this.ready;
  }

  /** A client for one of the app's queues (or its poison queue). */
  queue(name: string): QueueClient {
    const s = this.settings;
    return s.AzureWebJobsStorage
      ? new QueueClient(s.AzureWebJobsStorage, name)
      : new QueueClient(
          `${s.AzureWebJobsStorage__queueServiceUri!.replace(/\/$/, '')}/${name}`,
          this.options.credential,
        );
  }

  /** The policy file, re-read at most every 30 s so an uploaded change applies without a restart. */
  policies(): Promise<LoadedPolicyFile> {
    const at = this.now().getTime();
    if (!this.policyCache || at - this.policyCache.at > 30_000) {
      const value = this.readPolicyText().then(parsePolicyFile);
      value.catch(() => (this.policyCache = undefined));
      this.policyCache = { at, value };
    }
    return this.policyCache.value;
  }

  private async readPolicyText(): Promise<string> {
    if (this.settings.POLICY_FILE) return readFile(this.settings.POLICY_FILE, 'utf8');
    const blob = new BlobClient(this.settings.POLICY_BLOB_URL!, this.options.credential);
    return (await blob.downloadToBuffer()).toString('utf8');
  }

  async policy(policyId: string): Promise<{ policy: Policy; connection: Connection } | undefined> {
    const loaded = await this.policies();
    const policy = loaded.policies.find((p) => p.id === policyId);
    if (!policy) return undefined;
    return { policy, connection: loaded.connections.get(policy.connection)! };
  }

  /**
   * Graph clients for a connection, cached per worker. The certificate is checked in Key Vault every
   * CERTIFICATE_CHECK_MINUTES; a new version (renewal) rebuilds the credential without a restart.
   */
  async graph(connection: Connection): Promise<ConnectionClients> {
    const cached = this.connections.get(connection.id);
    if (cached) {
      const current = await cached.catch(() => undefined);
      const due =
        current &&
        this.now().getTime() - current.checkedAt >= this.settings.CERTIFICATE_CHECK_MINUTES * 60_000;
      if (current && !due) return current;
      if (current) {
        const cert = await this.signingCertificate(connection);
        if (cert.version === current.certificateVersion) {
          current.checkedAt = this.now().getTime();
          return current;
        }
      }
    }
    return this.rebuild(connection);
  }

  /** A GET (preview, health) repeated within a minute is answered from the first call. */
  answerRecent<T>(key: string, work: () => Promise<T>, ttlMs = 60_000): Promise<T> {
    const at = this.now().getTime();
    const hit = this.recentAnswers.get(key);
    if (hit && at - hit.at < ttlMs) return hit.value as Promise<T>;
    const value = work();
    this.recentAnswers.set(key, { at, value });
    value.catch(() => this.recentAnswers.delete(key));
    return value;
  }

  /** Drops the cached credential (after the token endpoint rejected the key) and builds a new one. */
  rebuild(connection: Connection): Promise<ConnectionClients> {
    const built = (async (): Promise<ConnectionClients> => {
      const cert = await this.signingCertificate(connection);
      const credential = createCredential(connection, cert);
      const client = createGraphClient(connection, credential, this.options.requestCounter);
      return {
        connection,
        client,
        credential,
        directory: new GraphDirectoryReader(client),
        mailboxes: new GraphMailboxes(client),
        ...(connection.exchangeAdmin ? { recipients: exchangeRecipients(connection, credential) } : {}),
        certificateVersion: cert.version,
        checkedAt: this.now().getTime(),
      };
    })();
    this.connections.set(connection.id, built);
    built.catch(() => this.connections.delete(connection.id));
    return built;
  }

  /**
   * The certificate workers sign with: Key Vault's newest, or with rotation on, the version registered
   * on the application (a renewed version is used only after the rotation has put it there).
   */
  async signingCertificate(connection: Connection): Promise<CertificatePem> {
    return (await chooseSigningCertificate(this, connection)).cert;
  }

  vaultOptions(): { disableChallengeResourceVerification?: boolean } {
    return this.options.disableChallengeResourceVerification
      ? { disableChallengeResourceVerification: true }
      : {};
  }

  get vaultCredential(): TokenCredential {
    return this.options.credential;
  }

  /** Sends a message to one of the app's queues (Azure's, or the CLI's in-process ones). */
  send(queue: QueueName, message: unknown, delaySeconds?: number): Promise<void> {
    return this.transport.send(queue, message, delaySeconds);
  }

  /** Queue messages are base64 (the Functions host's default messageEncoding), at most 64 KiB. */
  async enqueue(queue: QueueClient, message: unknown, visibilityTimeoutSeconds?: number): Promise<void> {
    const text = Buffer.from(JSON.stringify(message), 'utf8').toString('base64');
    if (text.length > maxQueueMessageBytes)
      throw new Error(`a ${queue.name} message of ${text.length} bytes exceeds the queue's 64 KiB limit`);
    await queue.sendMessage(
      text,
      visibilityTimeoutSeconds ? { visibilityTimeout: visibilityTimeoutSeconds } : {},
    );
  }
}

let current: App | undefined;

/** The worker's App, built from the environment on first use. */
export function getApp(): App {
  if (!current) {
    const settings = parseSettings(process.env);
    const clientId = settings.AZURE_CLIENT_ID ?? settings.AzureWebJobsStorage__clientId;
    current = new App({
      settings,
      credential: new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {}),
    });
  }
  return current;
}

/** Tests and the local runner supply their own App. */
export function setApp(app: App | undefined): void {
  current = app;
}
