import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from './errors.ts';
import { parseEnvAssignments } from './image.ts';

test('--env K=V keeps an = in the value and refuses a missing name or value sign', () => {
  assert.deepEqual(parseEnvAssignments(['A=b=c', 'B=']), { A: 'b=c', B: '' });
  for (const bad of ['=x', 'novalue']) {
    assert.throws(
      () => parseEnvAssignments([bad]),
      (e) => e instanceof UsageError && /NAME=VALUE/.test(e.message),
    );
  }
});
