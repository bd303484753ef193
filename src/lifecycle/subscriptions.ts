/** Subscriptions: the tenants, each owning its networks, services and reserved IPs. */
import { VipdipError } from '../core/errors.ts';
import type { Ctx } from './context.ts';
import { events } from './events.ts';
import { findSubscription } from './lookups.ts';
import { checkSubscriptionName } from './names.ts';
import type { SubscriptionView } from './views.ts';

export async function createSubscription(c: Ctx, name: string): Promise<SubscriptionView> {
  checkSubscriptionName(name);
  return c.write(async (tx) => {
    if (await tx.repo.subscriptionByName(name)) {
      throw new VipdipError('ALREADY_EXISTS', `subscription ${name} already exists`);
    }
    const row = await tx.repo.insertSubscription({ name, created_at: c.clock.now().toISOString() });
    tx.emit(events.subscriptionCreated(name));
    return { name: row.name, createdAt: row.created_at };
  });
}

export async function deleteSubscription(c: Ctx, name: string): Promise<void> {
  await c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, name);
    const [services, vnets, rips] = [
      await tx.repo.services(sub.id),
      await tx.repo.vnets(sub.id),
      await tx.repo.reservedIps(sub.id),
    ];
    if (services.length + vnets.length + rips.length > 0) {
      throw new VipdipError(
        'IN_USE',
        `subscription ${name} still has ${services.length} cloud services, ${vnets.length} virtual networks and ${rips.length} reserved IPs`,
      );
    }
    await tx.repo.deleteSubscription(sub.id);
    tx.emit(events.subscriptionDeleted(name));
  });
}

export function listSubscriptions(c: Ctx): Promise<SubscriptionView[]> {
  return c.read(async (r) =>
    (await r.subscriptions()).map((s) => ({ name: s.name, createdAt: s.created_at })),
  );
}
