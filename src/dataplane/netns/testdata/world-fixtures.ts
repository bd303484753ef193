/** A small world for the plan's unit tests (world.test.ts, vm-links.test.ts): one subscription, two VNets. */
import type { DesiredVm } from '../../driver.ts';

/** VM `name` of service `web` in subscription s1, in `vnet` (s1/net, 10.1.0.0/24, by default). */
export const vm = (name: string, dip: string, vnet = 's1/net', cidr = '10.1.0.0/24'): DesiredVm => ({
  key: `s1/web/${name}`,
  subscription: 's1',
  service: 'web',
  vm: name,
  vnet,
  cidr,
  dip,
});

export const vnets = [
  { key: 's1/net', subscription: 's1', name: 'net', subnets: ['10.1.0.0/24'] },
  { key: 's1/other', subscription: 's1', name: 'other', subnets: ['10.2.0.0/16'] },
];

/** A world prefix. */
export const P = 'vdabc123';
