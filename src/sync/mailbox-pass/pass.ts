// What every step of a mailbox pass shares: the policy, the mailbox, its ports, and the state the
// steps read and update (the stored contacts and folder row, the result being counted).
import type { ContactFieldName, Policy } from '../config/schema';
import type { ContactFields } from '../mapping';
import type { DesiredContact, MailboxPlan } from '../planner';
import type { SourceAddresses, TakeOverSummary } from './take-over';
import type {
  ContactLookUpOptions,
  FolderState,
  MailboxGraph,
  MailboxStateStore,
  StoredContact,
} from '../ports';
import type { PreReadDrift } from '../runs';

export interface MailboxError {
  sourceKey?: string;
  status: number;
  code: string;
  message: string;
  requestId?: string;
}

export interface MailboxResult {
  mailbox: string;
  userId: string;
  /** partial: the time budget ran out; run it again to continue. planned: a dry run. */
  status: 'succeeded' | 'failed' | 'skipped' | 'partial' | 'planned';
  skipReason?: 'noMailbox';
  created: number;
  updated: number;
  deleted: number;
  unchanged: number;
  restored: number;
  failed: number;
  errors: MailboxError[];
  deletionsBlocked?: MailboxPlan['deletionsBlocked'];
  /** Duplicates of a managed contact found and removed (healed). */
  duplicatesRemoved: number;
  /** Contact photos put or removed (planned, in a dry run). */
  photos?: number;
  /** Unmanaged contacts adopted, removed or left (options.unmanagedContacts). */
  takeOver?: TakeOverSummary;
  /** A removal run's mailbox (`deleted` counts the contacts): the folder went, others were left. */
  removal?: { folderRemoved: boolean; othersLeft: number };
}

/** A mailbox result's outcome and counters before any work: succeeded, every count 0, no error. */
export const freshCounts = (): Pick<
  MailboxResult,
  | 'status'
  | 'created'
  | 'updated'
  | 'deleted'
  | 'unchanged'
  | 'restored'
  | 'failed'
  | 'errors'
  | 'duplicatesRemoved'
> => ({
  status: 'succeeded',
  created: 0,
  updated: 0,
  deleted: 0,
  unchanged: 0,
  restored: 0,
  failed: 0,
  errors: [],
  duplicatesRemoved: 0,
});

export interface SyncMailboxOptions {
  dryRun: boolean;
  force: boolean;
  deadline?: number;
  /** The folder's next delta round, read at the run's start with other mailboxes' in one $batch. */
  preReadDrift?: PreReadDrift;
  /**
   * Read the folder's name (a user's rename undone) at most this often; without it, every pass reads
   * it. `now` is the pass's clock (epoch ms).
   */
  folderNameCheck?: FolderNameCheck;
}

export interface FolderNameCheck {
  everyMs: number;
  now: number;
}

/** What users changed in managed contacts: by contact id. */
export interface MutableDrift {
  changed: Map<string, { fields: ContactFields; changeKey: string }>;
  deleted: Set<string>;
}

/** The fields a user owns in a contact, with their values (carried to the contact's new folder). */
export interface CarriedEdit {
  keep: ContactFieldName[];
  values: ContactFields;
}

export interface MailboxPass {
  policy: Policy;
  /** The mailbox's user id. */
  mbx: string;
  graph: MailboxGraph;
  store: MailboxStateStore;
  options: SyncMailboxOptions;
  fields: ContactFieldName[];
  /** What the source wants in this mailbox (the mailbox's own user left out under excludeSelf). */
  desired: ReadonlyMap<string, DesiredContact>;
  /** The stored contact rows, kept current as steps change them. */
  contacts: Map<string, StoredContact>;
  folderState: FolderState | null;
  result: MailboxResult;
  /** Contacts that moved to another per-value folder: left alone until they are there (folder-parts.ts). */
  held?: { has(key: string): boolean };
  /** Contacts moving in from another per-value folder whose user owns some fields: written as theirs. */
  carried?: ReadonlyMap<string, CarriedEdit>;
  /** The source objects by e-mail address, read when a take-over needs them. */
  sourceAddresses?: () => Promise<SourceAddresses>;
}

/**
 * Options for a pass's contact look-ups: within `deadline`, and a read Graph refused (400, 403; it is
 * settled as gone) reported once in the mailbox's errors with Graph's request id.
 */
export function lookUpOptions(pass: MailboxPass, deadline: number | undefined): ContactLookUpOptions {
  return {
    ...(deadline !== undefined ? { deadline } : {}),
    onRefused: (r) => {
      const message = `contact ${r.contactId} could not be read and is taken as gone: ${r.message}`;
      if (pass.result.errors.some((e) => e.message === message)) return;
      pass.result.errors.push({
        status: r.status,
        code: r.code,
        message,
        ...(r.requestId ? { requestId: r.requestId } : {}),
      });
    },
  };
}
