import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { laneShares } from '../../../src/adapters/graph/mailbox-graph';

const calls = (shares: number[], batchSize: number): number =>
  shares.reduce((sum, s) => sum + Math.ceil(s / batchSize), 0);

describe('laneShares: writes spread over the 4 lanes of a mailbox', () => {
  it('splits 200 writes 50 per lane, so the busiest lane sends 50 instead of 60', () => {
    assert.deepEqual(laneShares(200, 4, 20), [50, 50, 50, 50]);
  });

  it('keeps a small write in one $batch, and opens a lane only for at least a full batch', () => {
    assert.deepEqual(laneShares(20, 4, 20), [20]);
    assert.deepEqual(laneShares(7, 4, 20), [7]);
    assert.deepEqual(laneShares(50, 4, 20), [17, 17, 16]);
    assert.deepEqual(laneShares(81, 4, 20), [21, 20, 20, 20]);
    assert.deepEqual(laneShares(0, 4, 20), []);
  });

  it('for any size: every write in exactly one share, the busiest lane at the fair share, at most 3 extra calls', () => {
    for (let n = 1; n <= 2_000; n++) {
      const shares = laneShares(n, 4, 20);
      assert.equal(
        shares.reduce((a, b) => a + b, 0),
        n,
        `n=${n}: shares add up`,
      );
      assert.equal(Math.max(...shares), Math.ceil(n / shares.length), `n=${n}: even`);
      assert.ok(shares.length <= 4, `n=${n}: at most 4 lanes`);
      assert.ok(calls(shares, 20) <= Math.ceil(n / 20) + 3, `n=${n}: calls`);
      if (n <= 20) assert.equal(calls(shares, 20), 1, `n=${n}: one $batch`);
    }
  });
});
