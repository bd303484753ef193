import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addressMap } from './address-map.ts';

describe('the address map of a subnet', () => {
  test('a /24 has one cell per address: the first four and the last reserved, DIPs used, the rest free', () => {
    const m = addressMap('10.0.1.0/24', [
      { address: '10.0.1.4', owner: 'shop/web1' },
      { address: '10.0.1.200', owner: 'shop/web2' },
    ]);
    assert.equal(m.perCell, 1);
    assert.equal(m.cells.length, 256);
    assert.deepEqual(
      m.cells.slice(0, 5).map((c) => c.kind),
      ['reserved', 'reserved', 'reserved', 'reserved', 'used'],
    );
    assert.equal(m.cells[255]!.kind, 'reserved');
    assert.equal(m.cells[200]!.kind, 'used');
    assert.deepEqual(m.cells[200]!.owners, ['10.0.1.200 shop/web2']);
    assert.equal(m.cells[5]!.kind, 'free');
    assert.deepEqual([m.size, m.usable, m.used, m.free, m.reserved], [256, 251, 2, 249, 5]);
  });

  test('free + used = usable, and the counts agree with the cells', () => {
    const bound = Array.from({ length: 37 }, (_, i) => ({
      address: `10.9.0.${10 + i * 3}`,
      owner: `vm${i}`,
    }));
    const m = addressMap('10.9.0.0/24', bound);
    assert.equal(m.used + m.free, m.usable);
    assert.equal(m.cells.filter((c) => c.kind === 'used').length, 37);
    assert.equal(
      m.cells.reduce((n, c) => n + c.reserved, 0),
      m.reserved,
    );
  });

  test('a /29 keeps three usable addresses; a full one has no free cell', () => {
    const m = addressMap('127.50.0.0/29', [
      { address: '127.50.0.4', owner: 'a' },
      { address: '127.50.0.5', owner: 'b' },
      { address: '127.50.0.6', owner: 'c' },
    ]);
    assert.deepEqual(
      m.cells.map((c) => c.kind),
      ['reserved', 'reserved', 'reserved', 'reserved', 'used', 'used', 'used', 'reserved'],
    );
    assert.deepEqual([m.usable, m.free], [3, 0]);
  });

  test('a large subnet is drawn at several addresses per cell, with partly used cells marked', () => {
    const m = addressMap('10.0.0.0/16', [{ address: '10.0.0.10', owner: 'x' }], 256);
    assert.equal(m.perCell, 256);
    assert.equal(m.cells.length, 256);
    assert.equal(m.cells[0]!.kind, 'mixed');
    assert.deepEqual([m.cells[0]!.reserved, m.cells[0]!.used, m.cells[0]!.count], [4, 1, 256]);
    assert.equal(m.cells[1]!.kind, 'free');
    assert.equal(m.cells[255]!.kind, 'mixed');
    assert.equal(m.cells[255]!.last, '10.0.255.255');
    assert.deepEqual([m.usable, m.used, m.free], [65531, 1, 65530]);
  });

  test('tiny subnets are all reserved and never negative', () => {
    for (const cidr of ['10.0.0.0/30', '10.0.0.0/31', '10.0.0.0/32']) {
      const m = addressMap(cidr, []);
      assert.equal(m.usable, 0, cidr);
      assert.ok(
        m.cells.every((c) => c.kind === 'reserved'),
        cidr,
      );
      assert.equal(m.reserved, m.size, cidr);
    }
  });

  test('a binding outside the subnet is reported, not drawn', () => {
    const m = addressMap('10.0.1.0/24', [{ address: '10.0.2.9', owner: 'stray' }]);
    assert.deepEqual(m.outside, ['10.0.2.9 stray']);
    assert.equal(m.used, 0);
  });
});
