import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLIENT_ROUTES, href, matchRoute } from './routes.ts';

describe('the client routes', () => {
  test('each route matches the path its href makes, with the same params', () => {
    const cases = [
      ['overview', {}],
      ['service', { service: 'shop' }],
      ['vm', { service: 'shop', vm: 'web1' }],
      ['vnet', { subscription: 'contoso', vnet: 'shop-net' }],
      ['events', {}],
    ] as const;
    assert.equal(cases.length, Object.keys(CLIENT_ROUTES).length);
    for (const [name, params] of cases) {
      const path = (href as (n: string, p?: object) => string)(name, params);
      assert.deepEqual(matchRoute(path), { name, params }, path);
    }
  });

  test('params are percent-encoded one way and decoded the other', () => {
    assert.equal(href('vm', { service: 'a b', vm: 'c/d' }), '/services/a%20b/vms/c%2Fd');
    assert.deepEqual(matchRoute('/services/a%20b/vms/c%2Fd'), {
      name: 'vm',
      params: { service: 'a b', vm: 'c/d' },
    });
  });

  test('a trailing slash is the same page; anything else is no page', () => {
    assert.equal(matchRoute('/services/shop/')?.name, 'service');
    for (const p of [
      '/nope',
      '/services',
      '/services/shop/vms',
      '/services//vms/x',
      '/v1/services',
      '/%E0%A4%A',
    ])
      assert.equal(matchRoute(p), null, p);
  });
});
