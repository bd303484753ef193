/**
 * The dashboard's copy of the API shapes must stay the API's: each is assigned to the server's view
 * and back, so a field added, removed or retyped on either side fails the typecheck (npm test).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as L from '../../lifecycle/index.ts';
import type * as W from './api-types.ts';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <T extends true>(_: T) => true;

test("the dashboard's API types are exactly the server's views", () => {
  assert.ok(same<Same<W.Vm, L.VmView>>(true));
  assert.ok(same<Same<W.Service, L.ServiceView>>(true));
  assert.ok(same<Same<W.Vnet, L.VnetView>>(true));
  assert.ok(same<Same<W.Subnet, L.SubnetView>>(true));
  assert.ok(same<Same<W.ReservedIp, L.ReservedIpView>>(true));
  assert.ok(same<Same<W.Pool, L.PoolView>>(true));
  assert.ok(same<Same<W.Host, L.HostView>>(true));
  assert.ok(same<Same<W.Subscription, L.SubscriptionView>>(true));
  assert.ok(same<Same<W.ApiEvent, L.EventView>>(true));
  assert.ok(same<Same<W.Endpoint, L.Endpoint>>(true));
});
