// Defect 7 (issue 15): a policy whose folder changes converges: contacts follow the folder, what the
// old shape left behind is removed, users' own contacts are untouched, no twins. Each sequence runs
// through the real queue pipeline and is checked by the model's invariant after every run.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runSequence, startWorld, type ModelWorld } from '../../model/model';

let world: ModelWorld;
before(async () => (world = await startWorld()));
after(() => world.f.close());

const restore = { onUserEdit: 'restore', onUserDelete: 'restore' } as const;

describe('policy folder changes (issue 15, defect 7)', () => {
  it('folder.name switched to null: the contacts move to the default folder, the old folder goes', async () => {
    await runSequence(world, {
      ...restore,
      steps: [{ t: 'run' }, { t: 'policyFolder', to: 'default', mailbox: 0 }],
    });
    const mailbox = world.f.sim.tenant.mailbox(world.targets[0]!)!;
    const id = `m${world.sequences}`;
    assert.ok(
      ![...mailbox.folders.values()].some((f) => f.displayName === `Model ${id}`),
      'the emptied folder is deleted',
    );
  });

  it('folder.name switched from null to a name: the contacts leave the default folder', () =>
    runSequence(world, {
      ...restore,
      steps: [
        { t: 'policyFolder', to: 'default', mailbox: 0 },
        { t: 'run' },
        { t: 'policyFolder', to: 'first', mailbox: 0 },
      ],
    }));

  it("folder.name renamed to a user's folder: adopted, the user's contact in it untouched, the old folder emptied", () =>
    runSequence(world, {
      ...restore,
      steps: [{ t: 'run' }, { t: 'policyFolder', to: 'taken', mailbox: 1 }],
    }));

  it('folder.name back to an earlier name, and a user keeping own contacts in the default folder', () =>
    runSequence(world, {
      onUserEdit: 'keep',
      onUserDelete: 'keep',
      steps: [
        { t: 'createOwn', mailbox: 2, like: 1 },
        { t: 'policyFolder', to: 'default', mailbox: 0 },
        { t: 'run' },
        { t: 'deleteContact', mailbox: 2, contact: 0 },
        { t: 'renamePolicyFolder' },
        { t: 'run' },
        { t: 'policyFolder', to: 'first', mailbox: 0 },
      ],
    }));

  it('a folder renamed by its user while the policy renames it too', () =>
    runSequence(world, {
      ...restore,
      steps: [{ t: 'run' }, { t: 'renameFolder', mailbox: 0 }, { t: 'renamePolicyFolder' }],
    }));
});

describe('a policy renamed (issue 15, defect 7: handled as a move through previousIds)', () => {
  it("the new id replaces the former id in place: no twins, no former contact left, users' own untouched", () =>
    runSequence(world, {
      ...restore,
      steps: [{ t: 'createOwn', mailbox: 0, like: 2 }, { t: 'run' }, { t: 'renamePolicyId' }],
    }));

  it('renamed with its folder renamed too, twice, and a user deletion kept (onUserDelete: keep)', () =>
    runSequence(world, {
      onUserEdit: 'keep',
      onUserDelete: 'keep',
      steps: [
        { t: 'run' },
        { t: 'deleteContact', mailbox: 1, contact: 3 },
        { t: 'run' },
        { t: 'renamePolicyId' },
        { t: 'renamePolicyFolder' },
        { t: 'run' },
        { t: 'renamePolicyId' },
        { t: 'policyFolder', to: 'default', mailbox: 0 },
      ],
    }));
});
