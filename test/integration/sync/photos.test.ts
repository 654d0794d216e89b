import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { GraphTenantSimulator } from '../../doubles/graph-tenant-simulator/simulator';
import type { SimUser } from '../../doubles/graph-tenant-simulator/tenant';
import { engineFixture, folderContacts, tagOf, type EngineFixture } from '../../support/engine';
import { functionsFixture, type FunctionsFixture } from '../../support/functions-app';

const folder = 'Company Directory';
const hours = (n: number): number => n * 3_600_000;

/** Bytes that look like a JPEG to anyone who checks the first bytes. */
const jpeg = (size = 2_000): { contentType: string; bytes: Buffer } => ({
  contentType: 'image/jpeg',
  bytes: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size)]),
});

const ops = (sim: GraphTenantSimulator, since: number, operation: string): number =>
  sim.log.since(since).filter((e) => e.operation === operation && e.status < 300).length;

/** The photo on each contact of a mailbox's folder, by the source user's id (null: none). */
function photosIn(sim: GraphTenantSimulator, upn: string): Map<string, Buffer | null> {
  const out = new Map<string, Buffer | null>();
  for (const c of folderContacts(sim, upn, folder)) {
    const userId = tagOf(c)?.split('|user:')[1];
    if (userId) out.set(userId, c.photo ? c.photo.bytes : null);
  }
  return out;
}

/** Every target holds, on the contact of each source user, exactly that user's current photo. */
function assertPhotosMatch(sim: GraphTenantSimulator, targets: SimUser[], users: SimUser[]): void {
  for (const t of targets) {
    const photos = photosIn(sim, t.userPrincipalName);
    assert.equal(photos.size, users.length - 1, `${t.userPrincipalName}: one contact per other user`);
    for (const u of users) {
      if (u.id === t.id) continue;
      const want = sim.tenant.users.get(u.id)!.photo?.bytes ?? null;
      const have = photos.get(u.id);
      assert.ok(have !== undefined, `${t.userPrincipalName}: a contact for ${u.userPrincipalName}`);
      if (want === null) assert.equal(have, null, `${u.userPrincipalName} has no photo, nor has the contact`);
      else assert.ok(have?.equals(want), `${t.userPrincipalName}: ${u.userPrincipalName}'s current photo`);
    }
  }
}

describe('contact photos: copied once, changed by hash, removed with the source', () => {
  let f: EngineFixture;
  let users: SimUser[];
  let targets: SimUser[];
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 12, mailboxes: 12, awkward: false } } });
    users = [...f.sim.tenant.users.values()];
    targets = users.slice(0, 3);
    // Half the users have a photo.
    users.forEach((u, i) => {
      if (i % 2 === 0) f.sim.tenant.setUserPhoto(u.id, jpeg());
    });
  });
  after(() => f.close());

  const policy = (): ReturnType<EngineFixture['policy']> =>
    f.policy({
      targets: { type: 'users', users: targets.map((t) => t.userPrincipalName) },
      photos: { enabled: true, recheckHours: 24 },
    });
  const start = Date.now();
  const at = (h: number) => () => new Date(start + hours(h));

  it('puts each photo on the contacts of its user, reading each photo once per run (not per mailbox)', async () => {
    const since = f.sim.log.lastSeq;
    const record = await f.run(policy(), { now: at(0) });
    assert.equal(record.mailboxes.failed, 0, JSON.stringify(record.results.map((r) => r.errors)));
    assertPhotosMatch(f.sim, targets, users);
    assert.equal(ops(f.sim, since, 'users.photo.value'), 6, 'the 6 users with a photo, once each');
    assert.equal(
      f.sim.log.since(since).filter((e) => e.operation === 'users.photo.value').length,
      12,
      'every source user looked at once (6 answer 404 ImageNotFound)',
    );
    // 6 photos, 3 targets, less each target's own photo where it has one (targets 0 and 2).
    assert.equal(ops(f.sim, since, 'contacts.photo.put'), 6 * 3 - 2);
    assert.equal(ops(f.sim, since, 'contacts.photo.delete'), 0, 'no request for a user without a photo');
    assert.deepEqual(record.source.photos, {
      checked: 12,
      changed: 6,
      tooLarge: 0,
      unreadable: 0,
      pending: 0,
    });
  });

  it('costs nothing for unchanged photos: no photo read, no upload, no contact write', async () => {
    const since = f.sim.log.lastSeq;
    const record = await f.run(policy(), { now: at(1) });
    assert.equal(record.mailboxes.failed, 0);
    const photoTraffic = f.sim.log.since(since).filter((e) => e.operation.includes('photo'));
    assert.deepEqual(photoTraffic, [], 'inside the recheck period no photo is read or written');
    const writes = f.sim.log
      .since(since)
      .filter((e) => ['contacts.create', 'contacts.update', 'contacts.delete'].includes(e.operation));
    assert.deepEqual(writes, [], 'our own photo uploads are not taken for user edits');
    assert.equal(record.contacts.updated + record.contacts.restored + record.contacts.created, 0);
  });

  it('after the recheck period: a changed photo is put again, a removed one removed, a new one added', async () => {
    const changed = users[4]!; // had a photo
    const removed = users[6]!; // had a photo
    const added = users[5]!; // had none
    const same = users[8]!; // keeps its photo
    f.sim.tenant.setUserPhoto(changed.id, jpeg(3_000));
    f.sim.tenant.setUserPhoto(removed.id, null);
    f.sim.tenant.setUserPhoto(added.id, jpeg());
    const since = f.sim.log.lastSeq;
    const record = await f.run(policy(), { now: at(25) });
    assert.equal(record.mailboxes.failed, 0, JSON.stringify(record.results.map((r) => r.errors)));
    assertPhotosMatch(f.sim, targets, users);
    assert.equal(record.source.photos?.checked, 12, 'every user looked at again once the period is over');
    assert.equal(record.source.photos?.changed, 3);
    // Each of the 3 changes reaches the 3 targets (none of the changed users is a target).
    assert.equal(ops(f.sim, since, 'contacts.photo.put'), 2 * 3, 'only the changed and the new photo');
    assert.equal(ops(f.sim, since, 'contacts.photo.delete'), 3, 'the removed photo, once per target');
    const putFor = f.sim.log
      .since(since)
      .filter((e) => e.operation === 'contacts.photo.put')
      .map((e) => e.path);
    const sameContactIds = targets.map(
      (t) => folderContacts(f.sim, t.userPrincipalName, folder).find((c) => tagOf(c)?.endsWith(same.id))!.id,
    );
    assert.ok(
      sameContactIds.every((id) => !putFor.some((p) => p.includes(encodeURIComponent(id)) || p.includes(id))),
      'an unchanged photo is not uploaded again',
    );
  });

  it('a user edit next to our photo upload is still noticed and restored', async () => {
    const target = targets[0]!;
    const contact = folderContacts(f.sim, target.userPrincipalName, folder).find((c) =>
      tagOf(c)?.endsWith(users[4]!.id),
    )!;
    f.sim.tenant
      .mailbox(target.userPrincipalName)!
      .updateContact(contact, { jobTitle: 'Typed by hand' }, [], new Date());
    const record = await f.run(policy(), { now: at(26) });
    assert.equal(record.contacts.restored, 1);
    const after = folderContacts(f.sim, target.userPrincipalName, folder).find((c) => c.id === contact.id)!;
    assert.notEqual(after.data.jobTitle, 'Typed by hand');
    assertPhotosMatch(f.sim, targets, users);
  });
});

describe('contact photos on a fill: the delta catch-up takes our photo uploads as ours', () => {
  let f: EngineFixture;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 300, mailboxes: 300, awkward: false } } });
    for (const u of f.sim.tenant.users.values()) f.sim.tenant.setUserPhoto(u.id, jpeg(500));
  });
  after(() => f.close());

  it('fills 299 contacts with photos, and the next run reads no contact one by one and writes nothing', async () => {
    const target = [...f.sim.tenant.users.values()][0]!;
    const policy = f.policy({
      targets: { type: 'users', users: [target.userPrincipalName] },
      photos: { enabled: true, recheckHours: 24 },
    });
    const first = await f.run(policy);
    assert.equal(first.mailboxes.failed, 0, JSON.stringify(first.results.map((r) => r.errors)));
    assert.equal(first.results[0]!.photos, 299);
    const since = f.sim.log.lastSeq;
    const second = await f.run(policy);
    assert.equal(second.mailboxes.failed, 0);
    assert.equal(ops(f.sim, since, 'contacts.get'), 0, 'no dirty contact left to look at');
    assert.equal(
      f.sim.log.since(since).filter((e) => e.mailbox !== null && e.method !== 'GET').length,
      0,
      'no write at all',
    );
  });
});

describe('contact photos and the 4 MB request limit', () => {
  let f: EngineFixture;
  let big: SimUser[];
  let huge: SimUser;
  before(async () => {
    f = await engineFixture({ seed: { generate: { users: 6, mailboxes: 6, awkward: false } } });
    const users = [...f.sim.tenant.users.values()];
    big = users.slice(1, 4);
    huge = users[4]!;
    for (const u of big) f.sim.tenant.setUserPhoto(u.id, jpeg(1_200_000));
    f.sim.tenant.setUserPhoto(huge.id, jpeg(2_600_000));
  });
  after(() => f.close());

  it('packs large photos into batches Graph accepts, and reports a photo too large to copy', async () => {
    const target = [...f.sim.tenant.users.values()][0]!;
    const record = await f.run(
      f.policy({
        targets: { type: 'users', users: [target.userPrincipalName] },
        photos: { enabled: true, recheckHours: 24 },
      }),
    );
    assert.equal(record.mailboxes.failed, 0, JSON.stringify(record.results.map((r) => r.errors)));
    assert.equal(f.sim.log.count({ status: 413 }), 0, 'no request over 4 MB');
    const photos = photosIn(f.sim, target.userPrincipalName);
    for (const u of big) assert.ok(photos.get(u.id)?.equals(f.sim.tenant.users.get(u.id)!.photo!.bytes));
    assert.equal(photos.get(huge.id), null, 'the photo over the limit is left off');
    assert.equal(record.source.photos?.tooLarge, 1);
    // Sub-requests are logged before their $batch envelope: group each put by the envelope after it.
    const log = f.sim.log.all();
    const envelopes = log.filter((e) => e.operation === 'batch').map((e) => e.seq);
    const batchesWithPuts = new Set(
      log
        .filter((e) => e.operation === 'contacts.photo.put')
        .map((e) => envelopes.find((seq) => seq > e.seq)),
    );
    assert.equal(batchesWithPuts.size, 2, 'three 1.2 MB photos go as 2 + 1, not in one 4.8 MB batch');
  });
});

describe('contact photos through the Functions app (queues, blob photo store)', () => {
  let f: FunctionsFixture;
  before(async () => {
    f = await functionsFixture({
      sim: { seed: { generate: { users: 8, mailboxes: 8, awkward: false } } },
      policies: () => [
        {
          id: 'gal',
          name: 'Company directory',
          connection: 'contoso',
          source: { type: 'directory' },
          targets: { type: 'allMailboxes' },
          folder: { name: folder },
          photos: { enabled: true },
        },
      ],
    });
    for (const u of [...f.sim.tenant.users.values()].slice(0, 4)) f.sim.tenant.setUserPhoto(u.id, jpeg());
  });
  after(() => f.close());

  it('a timer run copies the photos into every mailbox', async () => {
    await f.runner.tick();
    await f.runner.drain();
    const state = await f.app.runStore.getPolicyState('gal');
    const run = (await f.app.runStore.getRun(state.lastRunId!))!;
    assert.equal(run.status, 'completed');
    assert.equal(run.mailboxes.failed, 0, f.logs.filter((l) => l.startsWith('error')).join('\n'));
    const users = [...f.sim.tenant.users.values()];
    assertPhotosMatch(f.sim, users, users);
    assert.equal(ops(f.sim, 0, 'contacts.photo.put'), 4 * 8 - 4);
  });
});
