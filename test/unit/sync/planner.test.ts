import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { contactFieldNames } from '../../../src/sync/config/schema';
import { contentHash, type ContactFields } from '../../../src/sync/mapping';
import {
  planMailbox,
  planPhotos,
  type DesiredContact,
  type Drift,
  type ManagedContact,
  type PlanOptions,
} from '../../../src/sync/planner';

const options: PlanOptions = {
  fields: contactFieldNames,
  rules: {},
  onUserEdit: 'restore',
  onUserDelete: 'restore',
  onSourceRemoval: 'delete',
  removalCategory: 'Removed from directory',
  deletionThreshold: { percent: 20, minimum: 10 },
  force: false,
};
const want = (fields: ContactFields): DesiredContact => ({ fields, hash: contentHash(fields) });
const have = (id: string, fields: ContactFields, extra: Partial<ManagedContact> = {}): ManagedContact => ({
  contactId: id,
  hash: contentHash(fields),
  written: fields,
  changeKey: `ck-${id}`,
  keep: [],
  userDeleted: false,
  orphaned: false,
  ...extra,
});
const noDrift: Drift = { changed: new Map(), deleted: new Set() };
const ada: ContactFields = { displayName: 'Ada', jobTitle: 'Engineer', mobilePhone: '+1 1' };

interface Case {
  name: string;
  given: {
    desired: [string, ContactFields][];
    managed: [string, ManagedContact][];
    drift?: Drift;
    options?: Partial<PlanOptions>;
  };
  then: {
    creates?: string[];
    updates?: [string, string[]][];
    deletes?: string[];
    restores?: string[];
    unchanged?: number;
    forget?: string[];
    blocked?: boolean;
    keep?: [string, string[]][];
  };
}

const cases: Case[] = [
  {
    name: 'a new source object is created',
    given: { desired: [['u:1', ada]], managed: [] },
    then: { creates: ['u:1'] },
  },
  {
    name: 'an unchanged object is left alone',
    given: { desired: [['u:1', ada]], managed: [['u:1', have('c1', ada)]] },
    then: { unchanged: 1 },
  },
  {
    name: 'a changed object is patched with only the changed fields',
    given: { desired: [['u:1', { ...ada, jobTitle: 'Lead' }]], managed: [['u:1', have('c1', ada)]] },
    then: { updates: [['u:1', ['jobTitle']]] },
  },
  {
    name: 'a field emptied at the source is cleared',
    given: {
      desired: [['u:1', { displayName: 'Ada', jobTitle: 'Engineer' }]],
      managed: [['u:1', have('c1', ada)]],
    },
    then: { updates: [['u:1', ['mobilePhone']]] },
  },
  {
    name: 'an object gone from the source is deleted',
    given: { desired: [], managed: [['u:1', have('c1', ada)]] },
    then: { deletes: ['u:1'] },
  },
  {
    name: 'kept when removal says keep',
    given: { desired: [], managed: [['u:1', have('c1', ada)]], options: { onSourceRemoval: 'keep' } },
    then: { unchanged: 0, deletes: [] },
  },
  {
    name: 'marked with a category when removal says keepAndMark',
    given: { desired: [], managed: [['u:1', have('c1', ada)]], options: { onSourceRemoval: 'keepAndMark' } },
    then: { updates: [['u:1', ['categories']]] },
  },
  {
    name: 'a contact the user deleted is restored',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', ada)]],
      drift: { changed: new Map(), deleted: new Set(['c1']) },
    },
    then: { creates: ['u:1'], restores: ['u:1'] },
  },
  {
    name: 'a contact the user deleted stays deleted when the policy keeps deletions',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', ada)]],
      drift: { changed: new Map(), deleted: new Set(['c1']) },
      options: { onUserDelete: 'keep' },
    },
    then: { creates: [] },
  },
  {
    name: 'a user edit is restored',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', ada)]],
      drift: {
        changed: new Map([['c1', { fields: { ...ada, jobTitle: 'Scribble' }, changeKey: 'user' }]]),
        deleted: new Set(),
      },
    },
    then: { updates: [['u:1', ['jobTitle']]], restores: ['u:1'] },
  },
  {
    name: 'a user edit is kept, and the field becomes theirs, when the policy keeps edits',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', ada)]],
      drift: {
        changed: new Map([['c1', { fields: { ...ada, jobTitle: 'Scribble' }, changeKey: 'user' }]]),
        deleted: new Set(),
      },
      options: { onUserEdit: 'keep' },
    },
    then: { updates: [], keep: [['u:1', ['jobTitle']]] },
  },
  {
    name: 'our own write seen in the delta (same changeKey) is not drift',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', ada)]],
      drift: { changed: new Map([['c1', { fields: ada, changeKey: 'ck-c1' }]]), deleted: new Set() },
    },
    then: { unchanged: 1 },
  },
  {
    name: 'setIfEmpty: a value the user filled in survives a restore',
    given: {
      desired: [['u:1', { ...ada, jobTitle: 'Lead' }]],
      managed: [['u:1', have('c1', { displayName: 'Ada' })]],
      drift: {
        changed: new Map([
          ['c1', { fields: { displayName: 'Ada', jobTitle: 'My title' }, changeKey: 'user' }],
        ]),
        deleted: new Set(),
      },
      options: { rules: { jobTitle: 'setIfEmpty' } },
    },
    then: { updates: [['u:1', ['mobilePhone']]], keep: [['u:1', ['jobTitle']]] },
  },
  {
    name: 'setIfEmpty: a value we wrote follows the source (issue 15, defect 8)',
    given: {
      desired: [['u:1', { ...ada, jobTitle: 'Lead' }]],
      managed: [['u:1', have('c1', ada)]],
      options: { rules: { jobTitle: 'setIfEmpty' } },
    },
    then: { updates: [['u:1', ['jobTitle']]] },
  },
  {
    name: 'setIfEmpty: a value the user set over ours stays theirs when the source changes',
    given: {
      desired: [['u:1', { ...ada, jobTitle: 'Lead' }]],
      managed: [['u:1', have('c1', ada)]],
      drift: {
        changed: new Map([['c1', { fields: { ...ada, jobTitle: 'My title' }, changeKey: 'user' }]]),
        deleted: new Set(),
      },
      options: { rules: { jobTitle: 'setIfEmpty' } },
    },
    then: { unchanged: 1, keep: [['u:1', ['jobTitle']]] },
  },
  {
    name: 'a changed surname is sent with the displayName (Exchange may recompute it) (issue 15, defect 10)',
    given: {
      desired: [['u:1', { ...ada, givenName: 'Ada', surname: 'King' }]],
      managed: [['u:1', have('c1', { ...ada, givenName: 'Ada', surname: 'Byron' })]],
    },
    then: { updates: [['u:1', ['surname', 'displayName']]] },
  },
  {
    name: 'setIfEmpty: an empty field is filled',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', { displayName: 'Ada', mobilePhone: '+1 1' })]],
      options: { rules: { jobTitle: 'setIfEmpty' } },
    },
    then: { updates: [['u:1', ['jobTitle']]] },
  },
  {
    name: 'deletions above the threshold are held back',
    given: {
      desired: [],
      managed: Array.from({ length: 30 }, (_, i): [string, ManagedContact] => [`u:${i}`, have(`c${i}`, ada)]),
    },
    then: { deletes: [], blocked: true },
  },
  {
    name: 'a forced run deletes past the threshold',
    given: {
      desired: [],
      managed: Array.from({ length: 30 }, (_, i): [string, ManagedContact] => [`u:${i}`, have(`c${i}`, ada)]),
      options: { force: true },
    },
    then: { deletes: Array.from({ length: 30 }, (_, i) => `u:${i}`) },
  },
  {
    name: 'up to the minimum, deletions go ahead even above the percentage',
    given: {
      desired: Array.from({ length: 5 }, (_, i): [string, ContactFields] => [`k:${i}`, ada]),
      managed: [
        ...Array.from({ length: 5 }, (_, i): [string, ManagedContact] => [`k:${i}`, have(`k${i}`, ada)]),
        ...Array.from({ length: 10 }, (_, i): [string, ManagedContact] => [`u:${i}`, have(`c${i}`, ada)]),
      ],
    },
    then: { deletes: Array.from({ length: 10 }, (_, i) => `u:${i}`), unchanged: 5 },
  },
  {
    name: 'a returning source object takes the removal mark off its kept contact (issue 15, defect 10)',
    given: {
      desired: [['u:1', ada]],
      managed: [['u:1', have('c1', { ...ada, categories: ['Removed from directory'] }, { orphaned: true })]],
      options: {
        fields: contactFieldNames.filter((f) => f !== 'categories'),
        onSourceRemoval: 'keepAndMark',
      },
    },
    then: { updates: [['u:1', ['categories']]] },
  },
  {
    name: 'a re-added object resumes a kept (orphaned) contact instead of creating a twin',
    given: { desired: [['u:1', ada]], managed: [['u:1', have('c1', ada, { orphaned: true })]] },
    then: { creates: [], unchanged: 1 },
  },
];

describe('planMailbox (given / when / then)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const plan = planMailbox(
        new Map(c.given.desired.map(([k, f]) => [k, want(f)])),
        new Map(c.given.managed),
        c.given.drift ?? noDrift,
        { ...options, ...c.given.options },
      );
      if (c.then.creates)
        assert.deepEqual(
          plan.creates.map((x) => x.sourceKey),
          c.then.creates,
        );
      if (c.then.updates)
        assert.deepEqual(
          plan.updates.map((u) => [u.sourceKey, u.patchFields]),
          c.then.updates,
        );
      if (c.then.deletes)
        assert.deepEqual(
          plan.deletes.map((d) => d.sourceKey),
          c.then.deletes,
        );
      if (c.then.restores)
        assert.deepEqual(
          [...plan.creates, ...plan.updates].filter((x) => x.restore).map((x) => x.sourceKey),
          c.then.restores,
        );
      if (c.then.unchanged !== undefined) assert.equal(plan.unchanged, c.then.unchanged);
      if (c.then.blocked !== undefined) assert.equal(Boolean(plan.deletionsBlocked), c.then.blocked);
      for (const [key, fields] of c.then.keep ?? []) {
        const fromUpdate = plan.updates.find((u) => u.sourceKey === key)?.keep;
        const fromState = plan.stateChanges.find((s) => s.sourceKey === key && s.change.kind === 'set');
        const keep =
          fromUpdate ?? (fromState?.change.kind === 'set' ? fromState.change.contact.keep : undefined);
        assert.deepEqual(keep, fields);
      }
    });
  }
});

describe('planPhotos', () => {
  const withPhoto = (photo: string | null | undefined): DesiredContact =>
    photo === undefined ? want(ada) : { ...want(ada), photo };
  const cases: {
    name: string;
    desired: DesiredContact;
    managed: ManagedContact | undefined;
    then: { contactId: string; photo: string | null } | undefined;
  }[] = [
    {
      name: 'a new photo is put',
      desired: withPhoto('h1'),
      managed: have('c1', ada),
      then: { contactId: 'c1', photo: 'h1' },
    },
    {
      name: 'a changed photo is put again',
      desired: withPhoto('h2'),
      managed: have('c1', ada, { photo: 'h1' }),
      then: { contactId: 'c1', photo: 'h2' },
    },
    {
      name: 'the same photo costs nothing',
      desired: withPhoto('h1'),
      managed: have('c1', ada, { photo: 'h1' }),
      then: undefined,
    },
    {
      name: 'a photo removed at the source is removed',
      desired: withPhoto(null),
      managed: have('c1', ada, { photo: 'h1' }),
      then: { contactId: 'c1', photo: null },
    },
    {
      name: 'no photo on either side costs nothing',
      desired: withPhoto(null),
      managed: have('c1', ada),
      then: undefined,
    },
    {
      name: 'a user not looked at yet leaves the contact as it is',
      desired: withPhoto(undefined),
      managed: have('c1', ada, { photo: 'h1' }),
      then: undefined,
    },
    {
      name: 'a contact not created yet waits for its create',
      desired: withPhoto('h1'),
      managed: undefined,
      then: undefined,
    },
    {
      name: 'a contact the user deleted (and keeps deleted) gets no photo',
      desired: withPhoto('h1'),
      managed: have('c1', ada, { userDeleted: true }),
      then: undefined,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const managed = new Map(c.managed ? [['user:1', c.managed]] : []);
      const planned = planPhotos(new Map([['user:1', c.desired]]), managed);
      assert.deepEqual(planned, c.then ? [{ sourceKey: 'user:1', ...c.then }] : []);
    });
  }
});
