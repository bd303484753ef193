import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Principal } from './auth.ts';
import { authorize, routeScope } from './context.ts';

const operator: Principal = { kind: 'operator', name: 'operator' };
const tenant: Principal = { kind: 'subscription', subscription: 'contoso', name: 't' };

const codeOf = (e: ReturnType<typeof authorize>) => e?.code;

describe('route scopes', () => {
  test('a route that declares no scope is refused to everybody, the operator included', () => {
    assert.equal(routeScope({}), undefined);
    assert.equal(codeOf(authorize(undefined, operator, {})), 'FORBIDDEN');
    assert.equal(codeOf(authorize(undefined, tenant, {})), 'FORBIDDEN');
  });

  test('an unknown scope counts as none', () => {
    assert.equal(routeScope({ scope: 'everyone' as never }), undefined);
  });

  test('public: true is the public scope', () => {
    assert.equal(routeScope({ public: true }), 'public');
    assert.equal(routeScope({ scope: 'operator', public: true }), 'public');
  });

  test('operator and agent routes refuse a subscription token with 403 and take the operator token', () => {
    for (const scope of ['operator', 'agent'] as const) {
      assert.equal(codeOf(authorize(scope, tenant, {})), 'FORBIDDEN', scope);
      assert.equal(authorize(scope, operator, {}), undefined, scope);
    }
  });

  test('a tenant route naming another subscription answers 404, as if it did not exist; its own passes', () => {
    const e = authorize('tenant', tenant, { subscription: 'fabrikam' });
    assert.equal(codeOf(e), 'NOT_FOUND');
    assert.match(e!.message, /subscription fabrikam does not exist/);
    assert.equal(authorize('tenant', tenant, { subscription: 'contoso' }), undefined);
    assert.equal(authorize('tenant', tenant, { service: 'shop' }), undefined);
    assert.equal(authorize('tenant', operator, { subscription: 'fabrikam' }), undefined);
  });
});
