// The transcript in docs/setup.md is what `setup --yes` prints against the simulator today: a fresh
// run (dev/setup-transcript.ts, the CLI as a child process from an empty tenant) must print the
// committed text, ids, codes, thumbprints, versions and dates aside. Regenerate it with
// `npm run docs:setup-transcript`.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  comparable,
  committedRun,
  setupDoc,
  setupTranscript,
  transcriptRuns,
} from '../../../dev/setup-transcript';

it("docs/setup.md's transcript matches a fresh setup --yes against the simulator (regenerate: npm run docs:setup-transcript)", async () => {
  const doc = readFileSync(setupDoc, 'utf8');
  const fresh = await setupTranscript();
  for (const run of transcriptRuns) {
    assert.match(fresh[run], /\(exit 0\)\n$/, `${run} succeeded:\n${fresh[run]}`);
    assert.equal(
      comparable(committedRun(doc, run)),
      comparable(fresh[run]),
      `${run}: docs/setup.md differs from a fresh run; run npm run docs:setup-transcript`,
    );
  }
  assert.match(fresh['first-run'], /created app registration/);
  assert.match(fresh['second-run'], /found app registration/);
});
