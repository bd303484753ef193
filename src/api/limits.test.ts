import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ARRAY_ITEMS_MAX,
  STRING_CHARS_MAX,
  charsetOf,
  checkStructure,
  isUtf8,
  jsonDepthExceeds,
  yamlDepthExceeds,
} from './limits.ts';

describe('jsonDepthExceeds', () => {
  test('counts objects and arrays, not brackets inside strings', () => {
    assert.equal(jsonDepthExceeds('{"a":[{"b":1}]}', 3), false);
    assert.equal(jsonDepthExceeds('{"a":[{"b":1}]}', 2), true);
    assert.equal(jsonDepthExceeds(`{"a":"${'['.repeat(100)}"}`, 2), false);
    assert.equal(jsonDepthExceeds(`{"a":"\\"${'['.repeat(100)}"}`, 2), false);
  });
  test('a megabyte of nesting is found at once', () => {
    const t = '['.repeat(500_000) + ']'.repeat(500_000);
    assert.equal(jsonDepthExceeds(t, 32), true);
    assert.equal(jsonDepthExceeds('[]'.repeat(500_000), 32), false);
  });
});

describe('yamlDepthExceeds', () => {
  test('a realistic topology passes', () => {
    const doc = `subscriptions:
  - name: contoso # a comment with [[[[ brackets
    cloudServices:
      - name: shop
        vms:
          - { name: web1, subnet: front, workload: whoami }
          - name: "web2 [x"
`;
    assert.equal(yamlDepthExceeds(doc, 32), false);
  });
  test('flow nesting, dash nesting and deep indentation are caught', () => {
    assert.equal(yamlDepthExceeds(`a: ${'['.repeat(40)}${']'.repeat(40)}`, 32), true);
    assert.equal(yamlDepthExceeds(`${'- '.repeat(200)}x`, 32), true);
    assert.equal(yamlDepthExceeds(`${' '.repeat(200)}x: 1`, 32), true);
  });
});

describe('checkStructure', () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 8 },
      tags: { type: 'array', maxItems: 2, items: { type: 'string', maxLength: 3 } },
      note: { anyOf: [{ type: 'string', maxLength: 5 }, { type: 'null' }] },
    },
  };
  test('within the schema bounds: nothing', () => {
    assert.equal(checkStructure({ name: 'a', tags: ['x', 'y'], note: null }, schema), undefined);
  });
  test('the first excess, with its path', () => {
    assert.deepEqual(checkStructure({ tags: ['x', 'y', 'z'] }, schema), {
      path: 'body/tags',
      message: 'must not have more than 2 items',
    });
    assert.equal(checkStructure({ tags: ['x', 'long'] }, schema)?.path, 'body/tags/1');
    assert.equal(checkStructure({ note: 'toolong' }, schema)?.path, 'body/note');
  });
  test('an array far past its bound is refused without walking it', () => {
    const items: unknown[] = Array.from({ length: 350_000 }, () => ({}));
    Object.defineProperty(items, 0, {
      get: () => assert.fail('an over-long array must not be walked'),
    });
    assert.equal(checkStructure({ tags: items }, schema)?.path, 'body/tags');
  });
  test('without a schema the global bounds hold', () => {
    assert.match(checkStructure(new Array(ARRAY_ITEMS_MAX + 1).fill(0), undefined)?.message ?? '', /items/);
    assert.match(
      checkStructure({ a: 'x'.repeat(STRING_CHARS_MAX + 1) }, undefined)?.message ?? '',
      /characters/,
    );
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    assert.match(checkStructure(deep, undefined)?.message ?? '', /deeper/);
  });
});

describe('charset', () => {
  test('only UTF-8 (or none) is read', () => {
    assert.equal(charsetOf('application/json'), undefined);
    assert.equal(charsetOf('application/json; charset=UTF-16'), 'utf-16');
    assert.equal(charsetOf('application/json;charset="utf-8"'), 'utf-8');
    assert.equal(isUtf8(charsetOf('application/json; charset=utf-8')), true);
    assert.equal(isUtf8(charsetOf('application/json; charset=latin1')), false);
  });
});
