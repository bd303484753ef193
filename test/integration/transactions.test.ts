/**
 * The ambient write transaction: operations called inside a batch join it (all or nothing), and
 * only the batch's own Cloud joins it, even with several Clouds in one process (replicas in tests,
 * benchmarks), since the ambient transaction is one for the whole module.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeCloud, type TestCloud } from '../support/cloud.ts';

let a: TestCloud;
let b: TestCloud;
before(async () => {
  a = await makeCloud({ seed: 1 });
  b = await makeCloud({ seed: 2 });
});
after(async () => {
  await a.close();
  await b.close();
});

const names = async (t: TestCloud) => (await t.cloud.listSubscriptions()).map((s) => s.name).sort();

test('a batch that fails leaves none of its operations behind', async () => {
  await assert.rejects(
    a.cloud.batch(async () => {
      await a.cloud.createSubscription('first');
      await a.cloud.createSubscription('second');
      throw new Error('the third step fails');
    }),
    /the third step fails/,
  );
  assert.deepEqual(await names(a), []);
});

test("another Cloud called inside a batch writes to its own store, outside the batch's transaction", async () => {
  await assert.rejects(
    a.cloud.batch(async () => {
      await a.cloud.createSubscription('in-a');
      await b.cloud.createSubscription('in-b');
      assert.deepEqual(await names(a), ['in-a'], 'the batch sees its own uncommitted write');
      throw new Error('roll a back');
    }),
    /roll a back/,
  );
  assert.deepEqual(await names(a), [], "a's batch rolled back");
  assert.deepEqual(await names(b), ['in-b'], "b's operation committed in b's store, on its own");
});
