import assert from 'node:assert/strict';
import { test } from 'node:test';
import { workloadShown } from './workload.ts';

test('a workload shows as its image, or as the operator’s inline command, or as none', () => {
  assert.deepEqual(workloadShown('whoami'), { kind: 'image', image: 'whoami' });
  assert.deepEqual(workloadShown('command: sh -c id'), { kind: 'command', command: 'sh -c id' });
  assert.deepEqual(workloadShown(null), { kind: 'none' });
});
