// In-memory state stores for unit tests and dry runs (same contracts as the Table Storage ones).
import type { DesiredContact } from '../../sync/planner';
import type {
  FolderState,
  MailboxState,
  MailboxStateStore,
  Photo,
  PhotoStore,
  SourceAddresses,
  SourceMeta,
  SourceRow,
  SourceStore,
  StoredContact,
} from '../../sync/ports';
import { addressesOfRows } from '../../sync/mailbox-pass/take-over';

const clone = <T>(v: T): T => structuredClone(v);

export class MemorySourceStore implements SourceStore {
  readonly rows = new Map<string, Map<string, SourceRow>>();
  readonly meta = new Map<string, SourceMeta>();

  load(policyId: string): Promise<{ meta: SourceMeta | null; rows: Map<string, SourceRow> }> {
    return Promise.resolve({
      meta: clone(this.meta.get(policyId) ?? null),
      rows: clone(this.rows.get(policyId) ?? new Map<string, SourceRow>()),
    });
  }

  save(policyId: string, upserts: SourceRow[], deletes: string[], meta: SourceMeta): Promise<void> {
    const rows = this.rows.get(policyId) ?? new Map<string, SourceRow>();
    for (const r of upserts) rows.set(r.key, clone(r));
    for (const k of deletes) rows.delete(k);
    this.rows.set(policyId, rows);
    this.meta.set(policyId, clone(meta));
    return Promise.resolve();
  }

  loadDesired(policyId: string): Promise<ReadonlyMap<string, DesiredContact>> {
    const out = new Map<string, DesiredContact>();
    for (const [k, r] of this.rows.get(policyId) ?? []) if (r.desired) out.set(k, clone(r.desired));
    return Promise.resolve(out);
  }

  loadAddresses(policyId: string): Promise<SourceAddresses> {
    return Promise.resolve(addressesOfRows(this.rows.get(policyId)?.values() ?? []));
  }
}

export class MemoryMailboxStore implements MailboxStateStore {
  readonly folders = new Map<string, FolderState>();
  readonly contacts = new Map<string, Map<string, StoredContact>>();

  private key(policyId: string, mailboxId: string): string {
    return `${policyId}|${mailboxId}`;
  }

  load(policyId: string, mailboxId: string): Promise<MailboxState> {
    const k = this.key(policyId, mailboxId);
    return Promise.resolve({
      folder: clone(this.folders.get(k) ?? null),
      contacts: clone(this.contacts.get(k) ?? new Map<string, StoredContact>()),
    });
  }

  loadFolder(policyId: string, mailboxId: string): Promise<FolderState | null> {
    return Promise.resolve(clone(this.folders.get(this.key(policyId, mailboxId)) ?? null));
  }

  saveFolder(policyId: string, mailboxId: string, folder: FolderState): Promise<void> {
    this.folders.set(this.key(policyId, mailboxId), clone(folder));
    return Promise.resolve();
  }

  apply(
    policyId: string,
    mailboxId: string,
    upserts: [string, StoredContact][],
    deletes: string[],
  ): Promise<void> {
    const k = this.key(policyId, mailboxId);
    const rows = this.contacts.get(k) ?? new Map<string, StoredContact>();
    for (const [key, c] of upserts) rows.set(key, clone(c));
    for (const key of deletes) rows.delete(key);
    this.contacts.set(k, rows);
    return Promise.resolve();
  }

  clear(policyId: string, mailboxId: string): Promise<void> {
    const k = this.key(policyId, mailboxId);
    this.folders.delete(k);
    this.contacts.delete(k);
    return Promise.resolve();
  }

  listMailboxes(policyId: string): Promise<string[]> {
    const prefix = `${policyId}|`;
    const ids = new Set<string>();
    for (const k of [...this.folders.keys(), ...this.contacts.keys()])
      if (k.startsWith(prefix)) ids.add(k.slice(prefix.length));
    return Promise.resolve([...ids]);
  }
}

export class MemoryPhotoStore implements PhotoStore {
  readonly photos = new Map<string, Photo>();

  put(hash: string, photo: Photo): Promise<void> {
    this.photos.set(hash, { contentType: photo.contentType, bytes: Buffer.from(photo.bytes) });
    return Promise.resolve();
  }

  get(hash: string): Promise<Photo | undefined> {
    return Promise.resolve(this.photos.get(hash));
  }
}
