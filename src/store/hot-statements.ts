/**
 * The statements of the hottest path (a VM's start and deallocation) as text, written once for both
 * stores. Each is the SQL Kysely generates for the same `Repo` method (store.ts), so the rows they
 * return have the same shape; the stores run them without building and compiling a query on every
 * call, which CPU profiles put at a fifth (SQLite) to a quarter (PostgreSQL) of an operation's time
 * in the process. `?` marks a parameter; `numbered` gives PostgreSQL's `$1, $2, …`.
 */
import { flagToStore, type VmPatch } from './store.ts';

const VM_CONTEXT_SELECT = `select "vms".*,
  "cloud_services"."name" as "service_name",
  "cloud_services"."subscription_id" as "subscription_id",
  "cloud_services"."vnet_id" as "service_vnet_id",
  "cloud_services"."reserved_ip_id" as "service_reserved_ip_id",
  "cloud_services"."vip" as "service_vip",
  "cloud_services"."vip_pool_id" as "service_vip_pool_id",
  "subscriptions"."name" as "subscription_name",
  "subnets"."name" as "subnet_name",
  "vnets"."name" as "vnet_name",
  "vnets"."dip_policy" as "dip_policy",
  "vnets"."move_policy" as "move_policy",
  "hosts"."name" as "host_name",
  "hosts"."rack" as "host_rack"
from "vms"
inner join "cloud_services" on "cloud_services"."id" = "vms"."service_id"
inner join "subscriptions" on "subscriptions"."id" = "cloud_services"."subscription_id"
inner join "subnets" on "subnets"."id" = "vms"."subnet_id"
inner join "vnets" on "vnets"."id" = "subnets"."vnet_id"
left join "hosts" on "hosts"."id" = "vms"."host_id"`;

/** A VM's operation context (`VmContextRow`) by service and VM name. */
export const VM_CONTEXT_BY_NAMES = `${VM_CONTEXT_SELECT}
where "cloud_services"."name" = ? and "vms"."name" = ?`;

/** The same by the VM's id: read after its rows were locked (PostgreSQL). */
export const VM_CONTEXT_BY_ID = `${VM_CONTEXT_SELECT}
where "vms"."id" = ?`;

const LOCK_VM = `select "vms"."id" from "vms"
inner join "cloud_services" on "cloud_services"."id" = "vms"."service_id"
where "cloud_services"."name" = ? and "vms"."name" = ?`;

/** Locks a VM and its service for an operation that may change what depends on every VM of it. */
export const LOCK_VM_AND_SERVICE = `${LOCK_VM} for update of "cloud_services", "vms"`;

/** Locks a VM, and its service against losing or gaining its VIP meanwhile. */
export const LOCK_VM_SHARE_SERVICE = `${LOCK_VM} for share of "cloud_services" for update of "vms"`;

export const ALLOCATED_VM_COUNT = `select count(*) as "n" from "vms" where "service_id" = ? and "state" != 'deallocated'`;

export const HOSTS = `select * from "hosts" order by "name"`;

export const BIND = `insert into "address_bindings" ("scope", "address", "owner", "kind") values (?, ?, ?, ?)
on conflict ("scope", "address") do nothing`;

export const UNBIND = `delete from "address_bindings" where "scope" = ? and "address" = ?`;

export const UNBIND_OWNED = `delete from "address_bindings" where "scope" = ? and "address" = ? and "owner" = ?`;

/** A column name of a patch, checked before it is spliced into SQL (the names come from code). */
const COLUMN = /^[a-z_]+$/;

/**
 * The update of a VM's columns that a patch names (undefined ones left out), flags stored as 0/1;
 * undefined when the patch changes nothing.
 */
export function updateVmStatement(
  id: number,
  patch: VmPatch,
): { text: string; params: unknown[] } | undefined {
  const entries = Object.entries(patch)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [k, typeof v === 'boolean' ? flagToStore(v) : v] as const);
  if (entries.length === 0) return undefined;
  for (const [k] of entries) if (!COLUMN.test(k)) throw new Error(`not a column of vms: ${k}`);
  return {
    text: `update "vms" set ${entries.map(([k]) => `"${k}" = ?`).join(', ')} where "id" = ?`,
    params: [...entries.map(([, v]) => v), id],
  };
}

const numberedCache = new Map<string, string>();

/** PostgreSQL's form of a statement: each `?` (none of these texts has one in a literal) as `$n`. */
export function numbered(text: string): string {
  let out = numberedCache.get(text);
  if (out === undefined) {
    let n = 0;
    out = text.replace(/\?/g, () => `$${++n}`);
    // The texts are a handful, and the updates' a few more (one per set of columns).
    if (numberedCache.size < 256) numberedCache.set(text, out);
  }
  return out;
}
