/**
 * The schema's history, shared by SQLite and PostgreSQL. A migration is never edited once released;
 * a change is a new migration.
 */
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

function m001(dialect: Dialect): Migration {
  const addr = dialect === 'postgres' ? 'bigint' : 'integer';
  return {
    async up(db: Kysely<unknown>) {
      // Surrogate keys: SQLite's rowid alias, PostgreSQL's bigserial.
      const pk = (table: string) =>
        db.schema
          .createTable(table)
          .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
            dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          );

      await pk('subscriptions')
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await pk('public_pools')
        .addColumn('cidr', 'text', (c) => c.notNull().unique())
        .addColumn('base', addr, (c) => c.notNull())
        .addColumn('prefix', 'integer', (c) => c.notNull())
        .execute();
      await pk('hosts')
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('rack', 'text', (c) => c.notNull())
        .execute();
      await pk('vnets')
        .addColumn('subscription_id', 'bigint', (c) => c.notNull().references('subscriptions.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('address_space', 'text', (c) => c.notNull())
        .addColumn('dip_policy', 'text', (c) => c.notNull())
        .addColumn('move_policy', 'text', (c) => c.notNull())
        .addUniqueConstraint('vnets_name', ['subscription_id', 'name'])
        .execute();
      await pk('subnets')
        .addColumn('vnet_id', 'bigint', (c) => c.notNull().references('vnets.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('cidr', 'text', (c) => c.notNull())
        .addColumn('base', addr, (c) => c.notNull())
        .addColumn('prefix', 'integer', (c) => c.notNull())
        .addUniqueConstraint('subnets_name', ['vnet_id', 'name'])
        .execute();
      await pk('cloud_services')
        .addColumn('subscription_id', 'bigint', (c) => c.notNull().references('subscriptions.id'))
        // The name is the DNS label: unique across the whole system.
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('vnet_id', 'bigint', (c) => c.references('vnets.id'))
        .addColumn('reserved_ip_id', 'bigint', (c) => c.unique())
        .addColumn('vip', addr, (c) => c.unique())
        .addColumn('vip_pool_id', 'bigint', (c) => c.references('public_pools.id'))
        .execute();
      await pk('reserved_ips')
        .addColumn('subscription_id', 'bigint', (c) => c.notNull().references('subscriptions.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('pool_id', 'bigint', (c) => c.notNull().references('public_pools.id'))
        .addColumn('address', addr, (c) => c.notNull().unique())
        .addColumn('service_id', 'bigint', (c) => c.unique().references('cloud_services.id'))
        .addUniqueConstraint('reserved_ips_name', ['subscription_id', 'name'])
        .execute();
      await pk('vms')
        .addColumn('service_id', 'bigint', (c) => c.notNull().references('cloud_services.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('subnet_id', 'bigint', (c) => c.notNull().references('subnets.id'))
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('dip', addr)
        .addColumn('host_id', 'bigint', (c) => c.references('hosts.id'))
        .addColumn('static_dip', addr)
        .addColumn('ilpip_enabled', 'integer', (c) => c.notNull())
        .addColumn('ilpip', addr, (c) => c.unique())
        .addColumn('ilpip_pool_id', 'bigint', (c) => c.references('public_pools.id'))
        .addColumn('workload', 'text')
        .addColumn('endpoints', 'text', (c) => c.notNull())
        .addUniqueConstraint('vms_name', ['service_id', 'name'])
        .addUniqueConstraint('vms_dip', ['subnet_id', 'dip'])
        .execute();
      await db.schema
        .createTable('address_bindings')
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('address', addr, (c) => c.notNull())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('address_bindings_pk', ['scope', 'address'])
        .addUniqueConstraint('address_bindings_owner', ['owner', 'kind'])
        .execute();
      await db.schema
        .createTable('events')
        .addColumn('seq', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
          dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
        )
        .addColumn('time', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('subscription', 'text')
        .addColumn('resource', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('old', 'text')
        .addColumn('new', 'text')
        .execute();
      await db.schema
        .createIndex('events_subscription')
        .on('events')
        .columns(['subscription', 'seq'])
        .execute();
      await db.schema.createIndex('vms_host').on('vms').column('host_id').execute();
      await db.schema
        .createTable('meta')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
  };
}

/** API tokens, stored as SHA-256 hashes only; a null subscription marks an operator token. */
function m002(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('tokens')
        .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
          dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
        )
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('subscription_id', 'bigint', (c) => c.references('subscriptions.id'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
    },
  };
}

/**
 * Replicas: every event carries (on the first of its transaction) the changes that transaction made
 * to the allocation indexes, and on PostgreSQL one counter row hands out sequence numbers under a
 * row lock held to commit, so that sequence order is commit order and a rollback leaves no gap.
 */
function m003(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('events').addColumn('changes', 'text').execute();
      if (dialect === 'postgres') {
        await db.schema
          .createTable('event_counter')
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('seq', 'bigint', (c) => c.notNull())
          // The time of the last event: no event is stamped earlier, whatever a replica's clock says.
          .addColumn('time', 'text', (c) => c.notNull())
          .execute();
        await sql`insert into event_counter (id, seq, time)
          select 1, coalesce(max(seq), 0), coalesce(max(time), '') from events`.execute(db);
      }
    },
  };
}

/**
 * The history of one resource (the dashboard's VM page, `GET /v1/events?resource=`) without a scan
 * of the whole log: 40 ms against 0.2 ms for two resources among 500,000 events on SQLite, and the
 * scan held the one connection that every write waits for.
 */
function m004(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.createIndex('events_resource').on('events').columns(['resource', 'seq']).execute();
    },
  };
}

/**
 * A static DIP is its VM's for the VM's whole life (SPEC R4, I5): its binding, kind `static`, stays
 * while the VM is deallocated. Running static VMs' `dip` bindings become `static`; deallocated
 * static VMs reserve their address where nobody holds it (one that another VM took meanwhile stays
 * that VM's: `fsck` reports the VM, and its next start is refused rather than double-binding).
 */
function m005(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql`update address_bindings set kind = 'static'
        where kind = 'dip' and exists (
          select 1 from vms
          where address_bindings.owner = 'vm:' || vms.id
            and address_bindings.scope = 'subnet:' || vms.subnet_id
            and vms.static_dip = address_bindings.address)`.execute(db);
      await sql`insert into address_bindings (scope, address, owner, kind)
        select 'subnet:' || v.subnet_id, v.static_dip, 'vm:' || v.id, 'static' from vms v
        where v.static_dip is not null
          and not exists (select 1 from address_bindings b
            where b.scope = 'subnet:' || v.subnet_id and b.address = v.static_dip)
          and not exists (select 1 from address_bindings b
            where b.owner = 'vm:' || v.id and b.kind = 'static')
          -- Two deallocated VMs may name the same static DIP (it was checked only on start): the
          -- older one keeps it.
          and v.id = (select min(w.id) from vms w
            where w.subnet_id = v.subnet_id and w.static_dip = v.static_dip)`.execute(db);
    },
  };
}

/**
 * Images (SPEC §4, §8): a VM's workload names an image, or is an operator's inline command written
 * `command: …`. Before, every workload but the built-ins was a shell command: those keep running as
 * they did, now spelled as inline commands.
 */
function m006(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('images')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('command', 'text', (c) => c.notNull())
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await sql`update vms set workload = 'command:' || workload
        where workload is not null and workload not in ('whoami', 'echo')`.execute(db);
    },
  };
}

/**
 * SQLite's events take their sequence number from the rowid (max + 1), not from AUTOINCREMENT, which
 * wrote a row of `sqlite_sequence` in every transaction that appended an event: one more page per
 * commit, 15 % of the cost of a transaction that appends two events (27.3 against 32.1 µs, measured
 * with better-sqlite3 alone). Events are never deleted, so max + 1 hands out the same numbers
 * AUTOINCREMENT did, and a rolled-back append gave its number back under either. The table is
 * rebuilt once, with its rows and indexes. PostgreSQL's sequence is unchanged.
 */
function m007(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (dialect !== 'sqlite') return;
      await sql`create table events_rowid (
        seq integer primary key, time text not null, type text not null, subscription text,
        resource text not null, reason text not null, old text, new text, changes text)`.execute(db);
      await sql`insert into events_rowid (seq, time, type, subscription, resource, reason, old, new, changes)
        select seq, time, type, subscription, resource, reason, old, new, changes from events`.execute(db);
      await sql`drop table events`.execute(db);
      await sql`alter table events_rowid rename to events`.execute(db);
      await sql`delete from sqlite_sequence where name = 'events'`.execute(db);
      await db.schema
        .createIndex('events_subscription')
        .on('events')
        .columns(['subscription', 'seq'])
        .execute();
      await db.schema.createIndex('events_resource').on('events').columns(['resource', 'seq']).execute();
    },
  };
}

/**
 * SQLite's address bindings are a WITHOUT ROWID table keyed by (scope, address): the key is the
 * table, where before a rowid table held the rows and a second B-tree the key, so that every bind
 * and release wrote three B-trees' pages (rows, key, owner) and now writes two. A VM operation's
 * commit goes from nine WAL pages to eight. Same columns, same constraints, same rows.
 */
function m008(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (dialect !== 'sqlite') return;
      await sql`create table address_bindings_by_key (
        scope text not null, address integer not null, owner text not null, kind text not null,
        constraint address_bindings_pk primary key (scope, address),
        constraint address_bindings_owner unique (owner, kind)) without rowid`.execute(db);
      await sql`insert into address_bindings_by_key (scope, address, owner, kind)
        select scope, address, owner, kind from address_bindings`.execute(db);
      await sql`drop table address_bindings`.execute(db);
      await sql`alter table address_bindings_by_key rename to address_bindings`.execute(db);
    },
  };
}

/**
 * The VMs lose `vms_host`, an index that every start and deallocation wrote: one of the eight WAL
 * pages of a deallocation on SQLite, which at 10,000 VMs no two operations of a group commit share.
 * Only host maintenance reads VMs by host (and host loads, counted once at start and again by each
 * maintenance). At 10,000 VMs on SQLite, listing one host's VMs takes 6.0 ms without it and 6.3 ms
 * with it (a host holds too large a share of the VMs for the index to pay), and the host loads
 * 1.8 ms against 0.35 ms: a millisecond more per maintenance, ten microseconds less per operation.
 */
function m009(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql`drop index vms_host`.execute(db);
    },
  };
}

/**
 * A VM's DIP is checked against its binding instead of a second index. `vms_dip`, a unique index of
 * (subnet, DIP), was written twice by every start and deallocation (the old entry out, the new in)
 * and read by nothing: at 10,000 VMs those were pages of their own in every commit. Its guarantee
 * now comes from the binding: a trigger refuses a VM row whose DIP is not bound, in its subnet's
 * scope, to that VM — and since `address_bindings`' primary key (scope, address) lets one owner hold
 * an address, no two VMs of a subnet can hold the same DIP, and none can hold one it never drew.
 * The trigger only reads (the binding was written just before, in the same transaction: the
 * lifecycle binds, then sets the column). On SQLite the constraint is part of the table, which is
 * made again without it (same columns, rows, other constraints and AUTOINCREMENT counter); on
 * PostgreSQL it is dropped.
 */
function m010(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (dialect === 'postgres') {
        await sql`alter table vms drop constraint vms_dip`.execute(db);
        await sql`create function vms_dip_bound() returns trigger language plpgsql as $$
          begin
            if new.dip is not null and not exists (
              select 1 from address_bindings
              where scope = 'subnet:' || new.subnet_id and address = new.dip and owner = 'vm:' || new.id
            ) then
              raise exception 'vms_dip_bound: DIP % of VM % is not bound to it', new.dip, new.id
                using errcode = 'check_violation';
            end if;
            return new;
          end $$`.execute(db);
        await sql`create trigger vms_dip_bound before insert or update of dip on vms
          for each row execute function vms_dip_bound()`.execute(db);
        return;
      }
      const { rows } = await sql<{ seq: number }>`select seq from sqlite_sequence where name = 'vms'`.execute(
        db,
      );
      await sql`create table vms_next (
        id integer primary key autoincrement,
        service_id bigint not null references cloud_services (id),
        name text not null,
        subnet_id bigint not null references subnets (id),
        state text not null,
        dip integer,
        host_id bigint references hosts (id),
        static_dip integer,
        ilpip_enabled integer not null,
        ilpip integer unique,
        ilpip_pool_id bigint references public_pools (id),
        workload text,
        endpoints text not null,
        constraint vms_name unique (service_id, name))`.execute(db);
      await sql`insert into vms_next (id, service_id, name, subnet_id, state, dip, host_id, static_dip,
          ilpip_enabled, ilpip, ilpip_pool_id, workload, endpoints)
        select id, service_id, name, subnet_id, state, dip, host_id, static_dip,
          ilpip_enabled, ilpip, ilpip_pool_id, workload, endpoints from vms`.execute(db);
      await sql`drop table vms`.execute(db);
      await sql`alter table vms_next rename to vms`.execute(db);
      // A deleted VM's id is never given again (its events name it): the counter goes on from where it was.
      const seq = rows[0]?.seq;
      if (seq !== undefined)
        await sql`update sqlite_sequence set seq = max(seq, ${seq}) where name = 'vms'`.execute(db);
      // After the insert, when the row has its id (no binding can name a VM before it exists).
      for (const [name, when] of [
        ['vms_dip_bound_insert', 'after insert on vms'],
        ['vms_dip_bound_update', 'before update of dip on vms'],
      ] as const) {
        await sql`create trigger ${sql.raw(name)} ${sql.raw(when)} when new.dip is not null begin
          select raise(abort, 'vms_dip_bound: the DIP of a VM must be bound to it')
          where not exists (select 1 from address_bindings
            where scope = 'subnet:' || new.subnet_id and address = new.dip and owner = 'vm:' || new.id);
        end`.execute(db);
      }
    },
  };
}

export function migrations(dialect: Dialect): MigrationProvider {
  return {
    getMigrations: () =>
      Promise.resolve({
        '001-initial': m001(dialect),
        '002-tokens': m002(dialect),
        '003-replicas': m003(dialect),
        '004-events-by-resource': m004(),
        '005-static-dips-reserved': m005(),
        '006-images': m006(),
        '007-events-by-rowid': m007(dialect),
        '008-address-bindings-by-key': m008(dialect),
        '009-vms-without-host-index': m009(),
        '010-vms-dip-by-binding': m010(dialect),
      }),
  };
}
