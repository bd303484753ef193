import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isVipdipError } from '../core/errors.ts';
import { normalizeImage, parseWorkload, workloadImage } from './images.ts';

const invalid = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e) => isVipdipError(e, 'INVALID_ARGUMENT') && re.test(e.detail));

describe('workload references', () => {
  test('an image name is a lower-case word; "command:" marks an inline command', () => {
    assert.deepEqual(parseWorkload('whoami'), { kind: 'image', image: 'whoami' });
    assert.deepEqual(parseWorkload('web-2'), { kind: 'image', image: 'web-2' });
    assert.deepEqual(parseWorkload('command: sh -c "id"'), { kind: 'command', command: 'sh -c "id"' });
    assert.deepEqual(parseWorkload('command:id'), { kind: 'command', command: 'id' });
  });

  test('anything that looks like a command line is neither an image nor a command', () => {
    for (const w of [
      'sh -c id',
      'id;ls',
      '/bin/sh',
      '$(id)',
      'Whoami',
      'a b',
      '-x',
      'web-',
      'x'.repeat(64),
      '',
    ]) {
      invalid(() => parseWorkload(w), /not an image name/);
    }
    invalid(() => parseWorkload('command:   '), /needs a command line/);
  });

  test('the image a VM shows: its name, or none for an inline command', () => {
    assert.equal(workloadImage('echo'), 'echo');
    assert.equal(workloadImage('command: id'), null);
    assert.equal(workloadImage(null), null);
  });
});

describe('images', () => {
  test('an image has a command and plain variables, sorted', () => {
    assert.deepEqual(normalizeImage('web', { command: 'serve', env: { B: '2', A: '1' } }), {
      command: 'serve',
      env: { A: '1', B: '2' },
    });
    assert.deepEqual(normalizeImage('web', { command: 'serve' }), { command: 'serve', env: {} });
  });

  test('a built-in cannot be replaced, and an image may not set VIPDIP_* or odd names', () => {
    assert.throws(
      () => normalizeImage('whoami', { command: 'id' }),
      (e) => isVipdipError(e, 'ALREADY_EXISTS'),
    );
    invalid(() => normalizeImage('web', { command: 'x', env: { VIPDIP_TOKEN: 'x' } }), /VIPDIP_/);
    invalid(() => normalizeImage('web', { command: 'x', env: { 'A=B': 'x' } }), /variable name/);
    invalid(() => normalizeImage('web', { command: 'x', env: { A: 1 } }), /must be a string/);
    invalid(() => normalizeImage('web', { command: ' ' }), /non-empty command/);
    invalid(() => normalizeImage('Web', { command: 'x' }), /image name/);
  });
});
