import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostLoads, countMove, hostMoveOf } from './host-loads.ts';

const hosts = [
  { id: 1, name: 'h1', rack: 'r1' },
  { id: 2, name: 'h2', rack: 'r1' },
  { id: 3, name: 'h3', rack: 'r2' },
];
const move = (from: string | null, to: string | null) => ({
  type: 'vm.host',
  old: JSON.stringify({ host: from }),
  new: JSON.stringify({ host: to }),
});

test('committed vm.host events move a VM from one host’s count to another’s, other events none', () => {
  const loads = HostLoads.from(hosts, new Map([[1, 2]]));
  loads.apply([
    move(null, 'h2'),
    move('h1', 'h3'),
    { type: 'vm.dip', old: '{"dip":null}', new: '{"dip":"127.16.1.4"}' },
    move('h2', null),
  ]);
  assert.deepEqual(
    hosts.map((h) => loads.get(h.name)),
    [1, 0, 1],
  );
});

test('a transaction’s own placements count on top of the committed loads', () => {
  const loads = HostLoads.from(hosts, new Map([[1, 1]]));
  const own = new Map<string, number>();
  countMove(own, { old: null, new: 'h2' });
  countMove(own, { old: null, new: 'h2' });
  countMove(own, { old: 'h1', new: null });
  assert.deepEqual(
    [...loads.forHosts(hosts, own)],
    [
      [1, 0],
      [2, 2],
      [3, 0],
    ],
  );
  assert.deepEqual(
    [...loads.forHosts(hosts)],
    [
      [1, 1],
      [2, 0],
      [3, 0],
    ],
  );
});

test('only vm.host events are moves', () => {
  assert.equal(hostMoveOf({ type: 'vm.started', old: '{"state":"deallocated"}', new: null }), undefined);
  assert.deepEqual(hostMoveOf(move('h1', null)), { old: 'h1', new: null });
});
