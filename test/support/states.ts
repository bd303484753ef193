/** States built through the lifecycle, shared by the suites that check them. */
import type { Cloud } from '../../src/lifecycle/index.ts';
import { withShop } from './cloud.ts';

/**
 * A state with a bit of everything: running, stopped and deallocated VMs, a static DIP, an ILPIP,
 * a service on a reserved IP, an unassociated reserved IP, a service with no VM, a redeploy and a
 * host maintenance (DIPs that moved). Expects an empty cloud with the default fabric and pool.
 */
export async function buildCleanState(c: Cloud): Promise<void> {
  await withShop(c);
  await c.createVm('shop', { name: 'web1', subnet: 'front' });
  await c.createVm('shop', { name: 'web2', subnet: 'front' });
  await c.createVm('shop', { name: 'db1', subnet: 'back', staticDip: '127.16.2.10' });
  await c.createVm('shop', { name: 'app1', subnet: 'back', ilpip: true });
  await c.createVm('shop', { name: 'web3', subnet: 'front' });
  await c.vmOperation({ service: 'shop', vm: 'web3' }, 'deallocate');
  await c.createVm('shop', { name: 'web4', subnet: 'front' });
  await c.vmOperation({ service: 'shop', vm: 'web4' }, 'stop');
  await c.createReservedIp('contoso', 'blog-ip');
  await c.createService('contoso', { name: 'blog', vnet: 'shop-net', reservedIp: 'blog-ip' });
  await c.createVm('blog', { name: 'b1', subnet: 'back' });
  await c.createReservedIp('contoso', 'spare-ip');
  await c.createService('contoso', { name: 'empty', vnet: 'shop-net' });
  await c.vmOperation({ service: 'shop', vm: 'web1' }, 'redeploy');
  await c.maintenance({ rack: 'rack1' });
}
