// Syncs one mailbox, in named steps (src/sync/mailbox-pass): ensure the folder, read what users
// changed (the folder's contacts delta), heal by tag, plan, write through $batch with an intent log
// (pending rows) so a lost reply never makes a twin, then settle the folder row (the delta token
// past our own writes).
import type { Policy } from './config/schema';
import type { TargetMailbox } from './directory';
import { managedFields } from './mapping';
import type { DesiredContact } from './planner';
import {
  GraphRequestError,
  type MailboxGraph,
  type MailboxStateStore,
  type PhotoStore,
  type SourceStore,
} from './ports';
import { folderTemplateOf } from './config/schema';
import { ensureFolder, folderMissingInDryRun } from './mailbox-pass/ensure-folder';
import { leaveFolderParts, syncFolderParts, type RunPass } from './mailbox-pass/folder-parts';
import { adoptFormerIds } from './mailbox-pass/former-ids';
import { healByTag } from './mailbox-pass/heal';
import { MapWithout } from './mailbox-pass/map-without';
import {
  freshCounts,
  type MailboxPass,
  type MailboxResult,
  type SyncMailboxOptions,
} from './mailbox-pass/pass';
import { planPass, reportPlanned } from './mailbox-pass/plan';
import { writePhotos } from './mailbox-pass/photos';
import { readChanges } from './mailbox-pass/read-changes';
import { retireFolders } from './mailbox-pass/retire';
import { settleFolder } from './mailbox-pass/settle';
import { addressesOfRows, takeOver, wantsTakeOver } from './mailbox-pass/take-over';
import { writePlan } from './mailbox-pass/write';

export type { MailboxError, MailboxResult, SyncMailboxOptions } from './mailbox-pass/pass';

const emptyResult = (m: TargetMailbox): MailboxResult => ({
  mailbox: m.userPrincipalName,
  userId: m.userId,
  ...freshCounts(),
});

export async function syncMailbox(
  policy: Policy,
  mailbox: TargetMailbox,
  desiredAll: ReadonlyMap<string, DesiredContact>,
  graph: MailboxGraph,
  store: MailboxStateStore,
  options: SyncMailboxOptions,
  photoStore?: PhotoStore,
  sources?: SourceStore,
): Promise<MailboxResult> {
  const result = emptyResult(mailbox);
  try {
    if (folderTemplateOf(policy.folder.name)) {
      // The policy's own row's pre-read is of no folder now.
      const partOptions: SyncMailboxOptions = { ...options };
      delete partOptions.preReadDrift;
      return await syncFolderParts(
        policy,
        mailbox,
        desiredAll,
        graph,
        store,
        options,
        result,
        (p, d, s, r, x) => runPass(p, mailbox, d, graph, s, partOptions, r, photoStore, sources, x),
      );
    }
    await leaveFolderParts(policy, mailbox.userId, graph, store, options.dryRun);
    for (const prev of policy.previousIds)
      await leaveFolderParts({ ...policy, id: prev }, mailbox.userId, graph, store, options.dryRun);
    return await runPass(policy, mailbox, desiredAll, graph, store, options, result, photoStore, sources);
  } catch (e) {
    if (e instanceof GraphRequestError) {
      if (e.code === 'MailboxNotEnabledForRESTAPI')
        return { ...result, status: 'skipped', skipReason: 'noMailbox' };
      if (e.code === 'ErrorInvalidUser' || (e.status === 404 && /ResourceNotFound/.test(e.code))) {
        return {
          ...result,
          status: 'failed',
          errors: [
            ...result.errors,
            {
              status: e.status,
              code: e.code,
              message: `${e.message} The user no longer exists; the next run leaves them out.`,
              ...(e.requestId ? { requestId: e.requestId } : {}),
            },
          ],
        };
      }
      if (e.code === 'ErrorAccessDenied' || e.status === 403) {
        return {
          ...result,
          status: 'failed',
          errors: [
            ...result.errors,
            {
              status: e.status,
              code: e.code,
              message: `${e.message} The app may not touch this mailbox: check Exchange RBAC for Applications (the management scope) and the Contacts.ReadWrite permission.`,
              ...(e.requestId ? { requestId: e.requestId } : {}),
            },
          ],
        };
      }
    }
    throw e;
  }
}

async function runPass(
  policy: Policy,
  mailbox: TargetMailbox,
  desiredAll: ReadonlyMap<string, DesiredContact>,
  graph: MailboxGraph,
  store: MailboxStateStore,
  options: SyncMailboxOptions,
  result: MailboxResult,
  photoStore: PhotoStore | undefined,
  sources?: SourceStore,
  parts?: Parameters<RunPass>[4],
): Promise<MailboxResult> {
  const state = await store.load(policy.id, mailbox.userId);
  const pass: MailboxPass = {
    policy,
    mbx: mailbox.userId,
    graph,
    store,
    options,
    fields: managedFields(policy.mapping),
    desired: policy.targets.excludeSelf ? new MapWithout(desiredAll, `user:${mailbox.userId}`) : desiredAll,
    contacts: state.contacts,
    folderState: state.folder,
    result,
    ...(parts ? { held: parts.held } : {}),
    ...(parts?.carried ? { carried: parts.carried } : {}),
    // Every proxy address of the source objects, only when a take-over needs them (one copy per process).
    ...(sources
      ? {
          sourceAddresses: async () =>
            sources.loadAddresses
              ? sources.loadAddresses(policy.id)
              : addressesOfRows((await sources.load(policy.id)).rows.values()),
        }
      : {}),
  };
  const folder = await ensureFolder(pass);
  await adoptFormerIds(pass, state.folder === null);
  const changes = await readChanges(pass, folder.ref, folder.adopted);
  const { ref, drift } = changes;
  const healed = await healByTag(pass, ref, changes.reconcile, drift, changes.unknownIds);
  if (healed.cut && !options.dryRun) {
    // Look-ups by tag the budget cut short: what they found is kept; nothing is planned before the
    // rest are done, and the folder row keeps its token, so the next pass reads this round again.
    await store.apply(policy.id, pass.mbx, healed.upserts, healed.deletesState);
    result.status = 'partial';
    return result;
  }
  // A source that selects nothing is far likelier a broken filter or read than an empty company:
  // a take-over would then remove every contact the old tool left (as the plan's deletes below).
  const sourceLooksBroken = (parts?.sourceSize ?? desiredAll.size) === 0 && !options.force;
  if (
    !sourceLooksBroken &&
    !folderMissingInDryRun(pass) &&
    wantsTakeOver(pass, changes.reconcile, changes.unknownIds.size)
  )
    await takeOver(pass, ref);
  const plan = planPass(pass, drift, changes.lostWithFolder);
  if ((sourceLooksBroken || parts?.holdDeletes) && plan.deletes.length > 0) {
    const managed = [...pass.contacts.values()].filter((c) => !c.pending).length;
    result.deletionsBlocked = plan.deletionsBlocked = { wanted: plan.deletes.length, managed, limit: 0 };
    plan.deletes = [];
  }
  if (options.dryRun) {
    reportPlanned(pass, plan, healed.removeDuplicates.length);
    return result;
  }

  // State-only changes first, then writes.
  for (const s of plan.stateChanges) {
    if (s.change.kind === 'forget') healed.deletesState.push(s.sourceKey);
    else healed.upserts.push([s.sourceKey, s.change.contact]);
  }
  await store.apply(policy.id, pass.mbx, healed.upserts, healed.deletesState);
  const written = await writePlan(pass, ref, plan, healed.removeDuplicates, drift);
  // Re-checks the time budget cut short are read by the continuation before the mailbox is done.
  let incomplete = written.incomplete || changes.recheckCut || healed.unresolved.length > 0;
  let photoWrites = 0;
  if (policy.photos.enabled && !incomplete) {
    const photos = await writePhotos(pass, photoStore, written.writeOptions);
    photoWrites = photos.ops;
    incomplete = photos.incomplete;
  }
  // Our contacts leave a folder the policy left only once the new folder holds them all.
  if (!incomplete) await retireFolders(pass, written.writeOptions);

  await settleFolder(pass, {
    ref,
    newDeltaLink: changes.newDeltaLink,
    writes: written.ops + photoWrites,
    createdIds: written.createdIds,
    stillDirty: [...changes.stillDirty, ...healed.unresolved, ...written.conflicts],
    ...(incomplete ? { unsettled: drift } : {}),
  });
  if (incomplete) {
    result.status = 'partial';
    return result;
  }
  result.status = result.failed > 0 ? 'failed' : 'succeeded';
  return result;
}
