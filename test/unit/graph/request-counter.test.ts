// Issue 19 item 1: one Graph client serves concurrent invocations in a Function App host; each
// invocation counts only its own requests and 429s ($batch sub-requests each count as one).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Context, Middleware } from '@microsoft/microsoft-graph-client';
import { RequestCounter, countGraphTraffic } from '../../../src/adapters/graph/connection';

/** The HTTP end of the chain: answers 429 for URLs containing "throttle", else 200. */
class FakeHttp implements Middleware {
  async execute(context: Context): Promise<void> {
    await new Promise((r) => setTimeout(r, 1));
    const url = String(context.request);
    context.response = new Response(null, { status: url.includes('throttle') ? 429 : 200 });
  }
}

function counterChain(): RequestCounter {
  const counter = new RequestCounter();
  counter.setNext(new FakeHttp());
  return counter;
}

const send = (c: RequestCounter, url: string, body?: string) =>
  c.execute({ request: url, options: body === undefined ? {} : { method: 'POST', body } });

describe('RequestCounter per invocation', () => {
  it('counts requests and 429s of concurrent invocations apart', async () => {
    const counter = counterChain();
    const [a, b] = await Promise.all([
      countGraphTraffic(async () => {
        await send(counter, 'https://graph.microsoft.com/v1.0/users/a/contacts');
        await send(counter, 'https://graph.microsoft.com/v1.0/throttle/a');
        await send(counter, 'https://graph.microsoft.com/v1.0/users/a/contacts');
        return 'a';
      }),
      countGraphTraffic(async () => {
        await send(
          counter,
          'https://graph.microsoft.com/v1.0/$batch',
          JSON.stringify({ requests: [{ id: '1' }, { id: '2' }, { id: '3' }] }),
        );
        return 'b';
      }),
    ]);
    assert.deepEqual(a, { value: 'a', traffic: { requests: 3, throttled: 1 } });
    assert.deepEqual(b, { value: 'b', traffic: { requests: 3, throttled: 0 } });
    // The client-wide totals still count everything.
    assert.equal(counter.graphRequests, 6);
    assert.equal(counter.httpCalls, 4);
  });

  it('counts nothing into an invocation for requests sent outside any', async () => {
    const counter = counterChain();
    await send(counter, 'https://graph.microsoft.com/v1.0/throttle/x');
    const inside = await countGraphTraffic(() => Promise.resolve(1));
    assert.deepEqual(inside.traffic, { requests: 0, throttled: 0 });
  });

  it('hands the traffic counted so far to a failing invocation’s handler', async () => {
    const counter = counterChain();
    await assert.rejects(
      countGraphTraffic(async () => {
        await send(counter, 'https://graph.microsoft.com/v1.0/throttle/y');
        throw new Error('pass failed');
      }),
      (e: unknown) => {
        assert.deepEqual((e as { graphTraffic?: unknown }).graphTraffic, { requests: 1, throttled: 1 });
        return true;
      },
    );
  });
});
