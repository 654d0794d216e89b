import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MailboxThrottle, defaultThrottleOptions } from '../../doubles/graph-tenant-simulator/throttle';

describe('Outlook throttling per app per mailbox (simulator)', () => {
  it('given 4 requests in flight, when a 5th arrives for the same mailbox, then it is refused for concurrency', () => {
    const t = new MailboxThrottle(defaultThrottleOptions, () => 0);
    const held = [1, 2, 3, 4].map(() => t.admit('app', 'mbx'));
    assert.ok(held.every((d) => d.ok));
    const fifth = t.admit('app', 'mbx');
    assert.equal(fifth.ok, false);
    assert.equal(!fifth.ok && fifth.reason, 'MailboxConcurrency');
    assert.ok(t.admit('app', 'other-mailbox').ok, 'another mailbox is independent');
    assert.ok(t.admit('other-app', 'mbx').ok, 'another app is independent');
    if (held[0]!.ok) held[0]!.release();
    assert.ok(t.admit('app', 'mbx').ok, 'a released slot is free again');
  });

  it('given 10,000 requests within 10 minutes, when one more arrives, then it waits until the oldest leaves the window', () => {
    let now = 1_000;
    const t = new MailboxThrottle(defaultThrottleOptions, () => now);
    for (let i = 0; i < 10_000; i++) {
      const d = t.admit('app', 'mbx');
      assert.ok(d.ok);
      d.release();
      now += 10; // 100 s in all
    }
    const refused = t.admit('app', 'mbx');
    assert.equal(!refused.ok && refused.reason, 'MailboxRequestLimit');
    assert.equal(
      !refused.ok && refused.retryAfterSeconds,
      500,
      'oldest at 1 s leaves at 601 s; now is 101 s',
    );
    now = 1_000 + 600_000 + 1;
    assert.ok(t.admit('app', 'mbx').ok);
  });

  it('given a time scale, when the window fills, then the window and Retry-After shrink by that factor', () => {
    let now = 0;
    const t = new MailboxThrottle(
      { ...defaultThrottleOptions, requestsPerWindow: 2, timeScale: 600 },
      () => now,
    );
    for (let i = 0; i < 2; i++) {
      const d = t.admit('a', 'm');
      if (d.ok) d.release();
    }
    const refused = t.admit('a', 'm');
    assert.equal(!refused.ok && refused.retryAfterSeconds, 1);
    now = 1001;
    assert.ok(t.admit('a', 'm').ok);
  });
});
