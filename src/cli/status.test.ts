import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verbOf } from './main.ts';
import { formatUptime } from './status.ts';

test('uptime counts seconds below an hour and leaves them out from an hour on', () => {
  assert.equal(formatUptime(0), '0s');
  assert.equal(formatUptime(59), '59s');
  assert.equal(formatUptime(125), '2m 5s');
  assert.equal(formatUptime(3725), '1h 2m');
  assert.equal(formatUptime(90_061), '1d 1h 1m');
});

test('the verb of a command line is its first word, or the one after help', () => {
  assert.equal(verbOf(['node', 'vipdip', '--debug', 'up', '--demo']), 'up');
  assert.equal(verbOf(['node', 'vipdip', 'help', 'fsck']), 'fsck');
  assert.equal(verbOf(['node', 'vipdip', 'help']), 'help');
  assert.equal(verbOf(['node', 'vipdip', '--version']), undefined);
});
