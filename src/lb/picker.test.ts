import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIpv4 } from '../core/index.ts';
import type { Flow } from './hash.ts';
import { PickerSnapshot, type Backend } from './picker.ts';

const backend = (i: number, healthy = true): Backend => ({
  id: `contoso/shop/web${i}`,
  address: parseIpv4(`127.16.1.${10 + i}`),
  port: 8000,
  healthy,
});
const VIP = parseIpv4('127.100.0.1');
const flow = (client: string, srcPort: number): Flow => ({
  srcIp: parseIpv4(client),
  srcPort,
  dstIp: VIP,
  dstPort: 8080,
  protocol: 'tcp',
});

describe('picker snapshots', () => {
  test('new flows spread over the healthy backends in proportion to their slots', () => {
    const p = PickerSnapshot.build({ backends: [1, 2, 3].map((i) => backend(i)), mode: 'fiveTuple' });
    const hits = new Map<string, number>();
    for (let port = 20000; port < 23000; port++) {
      const b = p.pick(flow('127.0.0.1', port))!;
      hits.set(b.id, (hits.get(b.id) ?? 0) + 1);
    }
    assert.equal(hits.size, 3);
    for (const [id, n] of hits) assert.ok(n > 800 && n < 1200, `${id} got ${n} of 3000`);
  });

  test('a down backend receives no new flow, and its flows go to the others', () => {
    const up = PickerSnapshot.build({ backends: [1, 2, 3].map((i) => backend(i)), mode: 'fiveTuple' });
    const down = PickerSnapshot.build({
      backends: [backend(1), backend(2, false), backend(3)],
      mode: 'fiveTuple',
    });
    assert.deepEqual(
      down.healthy.map((b) => b.id),
      [backend(1).id, backend(3).id],
    );
    let kept = 0;
    let total = 0;
    for (let port = 1; port < 5000; port++) {
      const before = up.pick(flow('127.0.0.1', port))!;
      const after = down.pick(flow('127.0.0.1', port))!;
      assert.notEqual(after.id, backend(2).id);
      if (before.id !== backend(2).id) {
        total++;
        if (before.id === after.id) kept++;
      }
    }
    // Maglev moves little besides the removed backend's own flows.
    assert.ok(kept / total > 0.9, `${kept} of ${total} flows of healthy backends stayed`);
  });

  test('with no healthy backend there is nothing to pick', () => {
    const p = PickerSnapshot.build({ backends: [backend(1, false)], mode: 'fiveTuple' });
    assert.equal(p.pick(flow('127.0.0.1', 1)), undefined);
    assert.equal(
      PickerSnapshot.build({ backends: [], mode: 'sourceIP' }).pick(flow('127.0.0.1', 1)),
      undefined,
    );
  });

  test('sourceIP sends one client address to one backend whatever its ports', () => {
    const p = PickerSnapshot.build({ backends: [1, 2, 3].map((i) => backend(i)), mode: 'sourceIP' });
    for (let c = 1; c < 50; c++) {
      const client = `127.0.${c}.1`;
      const first = p.pick(flow(client, 1000))!.id;
      for (let port = 1001; port < 1100; port++) assert.equal(p.pick(flow(client, port))!.id, first);
    }
  });

  test('a backend keeps its flows when its address changes, since the table hashes its identity', () => {
    const a = PickerSnapshot.build({ backends: [1, 2, 3].map((i) => backend(i)), mode: 'fiveTuple' });
    const moved = { ...backend(2), address: parseIpv4('127.16.1.200') };
    const b = PickerSnapshot.build({ backends: [backend(1), moved, backend(3)], mode: 'fiveTuple' });
    for (let port = 1; port < 2000; port++) {
      assert.equal(a.pick(flow('127.0.0.1', port))!.id, b.pick(flow('127.0.0.1', port))!.id);
    }
    assert.equal(b.backends[1]!.address, parseIpv4('127.16.1.200'));
  });

  test('a published snapshot cannot be changed through the objects it was built from', () => {
    const list = [backend(1), backend(2)].map((b) => ({ ...b }));
    const p = PickerSnapshot.build({ backends: list, mode: 'fiveTuple' });
    list[0]!.healthy = false;
    list.pop();
    assert.equal(p.backends.length, 2);
    assert.equal(p.healthy.length, 2);
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.backends[0]));
  });

  test('bad input is refused when the snapshot is built, never on the per-flow path', () => {
    assert.throws(
      () => PickerSnapshot.build({ backends: [backend(1), backend(1)], mode: 'fiveTuple' }),
      /twice/,
    );
    assert.throws(
      () => PickerSnapshot.build({ backends: [backend(1)], mode: 'roundRobin' as never }),
      /unknown distribution mode/,
    );
    assert.throws(
      () => PickerSnapshot.build({ backends: [backend(1)], mode: 'fiveTuple', tableSize: 100 }),
      /prime/,
    );
  });

  test('a small prime table works as the default one does', () => {
    const p = PickerSnapshot.build({
      backends: [1, 2].map((i) => backend(i)),
      mode: 'fiveTuple',
      tableSize: 13,
    });
    const seen = new Set<string>();
    for (let port = 1; port < 200; port++) seen.add(p.pick(flow('127.0.0.1', port))!.id);
    assert.equal(seen.size, 2);
  });

  test('a flow avoiding its backend goes to the next acceptable one, the same one every time', () => {
    const p = PickerSnapshot.build({ backends: [1, 2, 3].map((i) => backend(i)), mode: 'fiveTuple' });
    const f = flow('127.0.0.1', 40000);
    const t = [f.srcIp, f.srcPort, f.dstIp, f.dstPort, 6] as const;
    const first = p.pick(f)!;
    assert.equal(
      p.pickTupleAvoiding(...t, () => false),
      first,
      'nothing avoided: the Maglev choice',
    );
    const second = p.pickTupleAvoiding(...t, (b) => b.id === first.id)!;
    assert.notEqual(second.id, first.id);
    assert.equal(
      p.pickTupleAvoiding(...t, (b) => b.id === first.id),
      second,
    );
    const third = p.pickTupleAvoiding(...t, (b) => b.id === first.id || b.id === second.id)!;
    assert.ok(third.id !== first.id && third.id !== second.id);
    assert.equal(
      p.pickTupleAvoiding(...t, () => true),
      undefined,
    );
    const spread = new Set<string>();
    for (let port = 20000; port < 20300; port++) {
      const g = flow('127.0.0.1', port);
      if (p.pick(g)!.id !== first.id) continue;
      const b = p.pickTupleAvoiding(g.srcIp, g.srcPort, g.dstIp, g.dstPort, 6, (x) => x.id === first.id);
      spread.add(b!.id);
    }
    assert.equal(spread.size, 2, "a failed backend's flows spread over both others");
  });
});
