// A field's rule changed across passes, with the state carried as the pass stores it: a value the
// user set under setIfEmpty stays theirs through a detour via 'never' (review 15b, finding 1: the
// fix for setIfEmpty → overwrite had dropped the user's ownership under any other rule, and the
// next setIfEmpty pass wrote the source over their value).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planMailbox, type ManagedContact, type PlanOptions } from '../../../src/sync/planner';
import { contentHash } from '../../../src/sync/mapping';
import type { ContactFields } from '../../../src/sync/mapping';
import type { ContactFieldName } from '../../../src/sync/config/schema';

type Rule = 'overwrite' | 'setIfEmpty' | 'never';
const all: ContactFieldName[] = ['displayName', 'jobTitle', 'mobilePhone'];
const source: ContactFields = { displayName: 'Ada', jobTitle: 'Engineer', mobilePhone: '+1 1' };

function options(rule: Rule): PlanOptions {
  return {
    fields: rule === 'never' ? all.filter((f) => f !== 'jobTitle') : all,
    rules: { jobTitle: rule },
    onUserEdit: 'restore',
    onUserDelete: 'restore',
    onSourceRemoval: 'delete',
    removalCategory: 'x',
    deletionThreshold: { percent: 20, minimum: 10 },
    force: false,
  };
}

/** A mailbox with one managed contact, passed under a sequence of rules; returns its job title. */
function afterRules(rules: Rule[]): string | undefined {
  let have: ManagedContact = {
    contactId: 'c1',
    hash: contentHash(source),
    written: source,
    changeKey: 'ck1',
    keep: [],
    userDeleted: false,
    orphaned: false,
  };
  const contact: ContactFields = { ...source };
  let changeKey = 'ck1';
  const pass = (rule: Rule, n: number): void => {
    const fields: ContactFields = { ...source };
    if (rule === 'never') delete fields.jobTitle;
    const edited =
      changeKey !== have.changeKey ? new Map([['c1', { fields: { ...contact }, changeKey }]]) : new Map();
    const plan = planMailbox(
      new Map([['k', { fields, hash: contentHash(fields) }]]),
      new Map([['k', have]]),
      { changed: edited, deleted: new Set() } as never,
      options(rule),
    );
    for (const u of plan.updates) {
      Object.assign(contact, u.patch);
      changeKey = `ck-pass-${n}`;
      have = { ...have, written: u.written, hash: u.hash, keep: u.keep, changeKey };
    }
    for (const s of plan.stateChanges) if (s.change.kind === 'set') have = s.change.contact;
  };
  pass('setIfEmpty', 0);
  contact.jobTitle = 'My own title';
  changeKey = 'ck-user';
  rules.forEach((rule, i) => pass(rule, i + 1));
  return contact.jobTitle;
}

test('setIfEmpty: the user value survives a detour through never', () =>
  assert.equal(afterRules(['setIfEmpty', 'never', 'setIfEmpty']), 'My own title'));

test('setIfEmpty: the user value survives never, and never itself writes nothing', () =>
  assert.equal(afterRules(['setIfEmpty', 'never', 'never']), 'My own title'));

test('setIfEmpty, then overwrite: the source value comes back', () =>
  assert.equal(afterRules(['setIfEmpty', 'overwrite']), 'Engineer'));
