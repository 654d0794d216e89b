import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseSettings, settingKeys } from '../../src/app/settings';

const root = resolve(__dirname, '../../..');

describe('app settings', () => {
  it('local.settings.example.json lists exactly the keys the app reads (plus the worker runtime)', () => {
    const example = JSON.parse(readFileSync(resolve(root, 'local.settings.example.json'), 'utf8')) as {
      Values: Record<string, string>;
    };
    assert.deepEqual(
      Object.keys(example.Values)
        .filter((k) => k !== 'FUNCTIONS_WORKER_RUNTIME')
        .sort(),
      [...settingKeys].sort(),
    );
  });

  it('accepts local.settings.example.json as it is (empty values mean unset)', () => {
    const example = JSON.parse(readFileSync(resolve(root, 'local.settings.example.json'), 'utf8')) as {
      Values: Record<string, string>;
    };
    const settings = parseSettings(example.Values);
    assert.equal(settings.AzureWebJobsStorage, 'UseDevelopmentStorage=true');
    assert.equal(settings.AzureWebJobsStorage__credential, undefined);
  });

  it('fails fast naming the missing or bad setting', () => {
    assert.throws(
      () => parseSettings({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' }),
      /POLICY_BLOB_URL/,
    );
    assert.throws(() => parseSettings({ POLICY_FILE: 'p.json' }), /AzureWebJobsStorage__tableServiceUri/);
    assert.throws(
      () =>
        parseSettings({
          POLICY_FILE: 'p.json',
          AzureWebJobsStorage: 'x',
          MAILBOX_TIME_BUDGET_SECONDS: 'soon',
        }),
      /MAILBOX_TIME_BUDGET_SECONDS/,
    );
    const ok = parseSettings({
      POLICY_BLOB_URL: 'https://st.blob.core.windows.net/config/policies.json',
      AzureWebJobsStorage__queueServiceUri: 'https://st.queue.core.windows.net',
      AzureWebJobsStorage__tableServiceUri: 'https://st.table.core.windows.net',
    });
    assert.equal(ok.MAILBOX_TIME_BUDGET_SECONDS, 240);
    assert.equal(ok.SCHEDULER_SCHEDULE, '0 */1 * * * *');
  });

  it('RUN_HISTORY_DAYS: 90 days by default; a bad value is refused naming the setting', () => {
    const base = { POLICY_FILE: 'p.json', AzureWebJobsStorage: 'x' };
    assert.equal(parseSettings(base).RUN_HISTORY_DAYS, 90);
    assert.equal(parseSettings({ ...base, RUN_HISTORY_DAYS: '30' }).RUN_HISTORY_DAYS, 30);
    for (const bad of ['0', '-5', '1.5', 'forever', '100000'])
      assert.throws(
        () => parseSettings({ ...base, RUN_HISTORY_DAYS: bad }),
        /app settings are invalid: RUN_HISTORY_DAYS: /,
        bad,
      );
  });

  it('FOLDER_NAME_CHECK_HOURS: 24 hours by default, 0 for every run; a bad value is refused naming it', () => {
    const base = { POLICY_FILE: 'p.json', AzureWebJobsStorage: 'x' };
    assert.equal(parseSettings(base).FOLDER_NAME_CHECK_HOURS, 24);
    assert.equal(parseSettings({ ...base, FOLDER_NAME_CHECK_HOURS: '0' }).FOLDER_NAME_CHECK_HOURS, 0);
    assert.equal(parseSettings({ ...base, FOLDER_NAME_CHECK_HOURS: '1.5' }).FOLDER_NAME_CHECK_HOURS, 1.5);
    for (const bad of ['-1', 'daily', '9000'])
      assert.throws(
        () => parseSettings({ ...base, FOLDER_NAME_CHECK_HOURS: bad }),
        /app settings are invalid: FOLDER_NAME_CHECK_HOURS: /,
        bad,
      );
  });
});
