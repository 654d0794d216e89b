// Where certificate rotation keeps its progress: one row per connection in the policies table. Table
// Storage is the least privilege way: the app already writes it, while tagging Key Vault versions
// would need Key Vault Certificates Officer on top of Secrets User. Each step writes before and after
// its Graph call, so a repeated step finds the state and continues.
import type { TableClient } from '@azure/data-tables';
import type { Connection } from '../../sync/config/schema';

export const rotationPartition = 'certificate-rotation';
/** One lease row per connection: only one rotation check runs at a time (two ticks, two hosts). */
export const rotationLeasePartition = 'certificate-rotation-lease';

export interface RotationState {
  /** The Key Vault certificate the versions below belong to (missing on rows of the first release). */
  keyVaultUrl?: string;
  certificateName?: string;
  /**
   * The connection's certificate.keyId when the row started: an admin who uploads another key by hand
   * (rotation turned off, then on) and names it there makes the rotation start over.
   */
  policyKeyId?: string;
  /** The Key Vault version workers sign tokens with (registered on the application). */
  activeVersion: string;
  /** Its keyCredential id; unknown for a key uploaded by hand unless the policy file names it. */
  activeKeyId?: string;
  /** A newer version being rolled on; once added to the application, not yet switched to. */
  pendingVersion?: string;
  pendingAdded?: boolean;
  /** The keyId addKey returned; missing when the reply was lost (the key is on the application). */
  pendingKeyId?: string;
  /** The previous key, removed from the application after the overlap. */
  retiredVersion?: string;
  retiredKeyId?: string;
  retiredThumbprint?: string;
  removeAfter?: string;
  lastRolledAt?: string;
  lastRemovedAt?: string;
  /** The last thing that went wrong, with what to do; cleared by a clean rotation check. */
  problem?: string;
  checkedAt?: string;
}

/** Which certificate a row's versions belong to: written with every rotation check. */
export function certificateIdentity(
  connection: Connection,
): Pick<RotationState, 'keyVaultUrl' | 'certificateName' | 'policyKeyId'> {
  if (!('keyVaultUrl' in connection.certificate)) return {};
  const { keyVaultUrl, name, keyId } = connection.certificate;
  return { keyVaultUrl, certificateName: name, ...(keyId ? { policyKeyId: keyId } : {}) };
}

/**
 * Whether the row's versions are of the connection's current Key Vault certificate. A row of the first
 * release has no identity: its pinned version is then checked against Key Vault by the caller.
 */
export function pinsCertificate(state: RotationState, connection: Connection): boolean {
  if (!('keyVaultUrl' in connection.certificate)) return false;
  const { keyVaultUrl, name, keyId } = connection.certificate;
  return (
    (state.keyVaultUrl === undefined || state.keyVaultUrl === keyVaultUrl) &&
    (state.certificateName === undefined || state.certificateName === name) &&
    (state.policyKeyId === undefined || keyId === undefined || state.policyKeyId === keyId)
  );
}

const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

export class RotationStore {
  constructor(private readonly table: TableClient) {}

  async get(connectionId: string): Promise<{ state: RotationState; etag: string } | undefined> {
    try {
      const e = await this.table.getEntity<{ data: string }>(rotationPartition, connectionId);
      return { state: JSON.parse(e.data) as RotationState, etag: e.etag };
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  /** Writes the state; etag null creates it. Returns the new etag (a concurrent writer gets a 409/412). */
  async put(connectionId: string, state: RotationState, etag: string | null): Promise<string> {
    const entity = { partitionKey: rotationPartition, rowKey: connectionId, data: JSON.stringify(state) };
    const r =
      etag === null
        ? await this.table.createEntity(entity)
        : await this.table.updateEntity(entity, 'Replace', { etag });
    return r.etag ?? '';
  }

  /**
   * Takes the connection's rotation lease until `expiresAt` (a crashed holder's lease lapses); false
   * when another check holds it. A lost race (409/412) counts as held by the other.
   */
  async acquireLease(connectionId: string, holder: string, now: Date, expiresAt: Date): Promise<boolean> {
    const entity = {
      partitionKey: rotationLeasePartition,
      rowKey: connectionId,
      holder,
      expiresAt: expiresAt.toISOString(),
    };
    try {
      const found = await this.table
        .getEntity<{ holder: string; expiresAt: string }>(rotationLeasePartition, connectionId)
        .catch((e: unknown) => {
          if (status(e) === 404) return undefined;
          throw e;
        });
      if (!found) await this.table.createEntity(entity);
      else if (new Date(found.expiresAt).getTime() > now.getTime()) return false;
      else await this.table.updateEntity(entity, 'Replace', { etag: found.etag });
      return true;
    } catch (e) {
      if (status(e) === 409 || status(e) === 412) return false;
      throw e;
    }
  }

  async releaseLease(connectionId: string, holder: string): Promise<void> {
    try {
      const found = await this.table.getEntity<{ holder: string }>(rotationLeasePartition, connectionId);
      if (found.holder === holder)
        await this.table.deleteEntity(rotationLeasePartition, connectionId, { etag: found.etag });
    } catch (e) {
      if (status(e) !== 404 && status(e) !== 412) throw e;
    }
  }
}
