/**
 * A declarative apply is one transaction, and its events are appended before commit: a topology
 * large enough that those events bind more parameters than one statement may (SQLite: 32,766;
 * PostgreSQL: 65,535) still applies, whole, on each dialect. Issue 14: 256 services of 4 VMs
 * failed with `SqliteError: too many SQL variables`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatFinding, fsck } from '../../src/lifecycle/index.ts';
import { EVENT_PARAMS, POSTGRES_MAX_PARAMS, SQLITE_MAX_PARAMS } from '../../src/store/index.ts';
import { applyTopology, parseTopology } from '../../src/topology/index.ts';
import { DIALECTS, makeDialectCloud } from '../support/cloud.ts';
import { usePostgres } from '../support/postgres.ts';

const postgres = usePostgres();
const VMS_PER_SERVICE = 4;
/** Events a new started VM appends: created, host, DIP, started (and its service's VIP, once). */
const EVENTS_PER_VM = 4;
/** Services enough to pass each dialect's limit on the parameters of one statement. */
const SERVICES = {
  sqlite: Math.ceil(SQLITE_MAX_PARAMS / EVENT_PARAMS / EVENTS_PER_VM / VMS_PER_SERVICE) + 8,
  postgres: Math.ceil(POSTGRES_MAX_PARAMS / EVENT_PARAMS / EVENTS_PER_VM / VMS_PER_SERVICE) + 8,
};

function topology(services: number) {
  return parseTopology({
    subscriptions: [
      {
        name: 'big',
        virtualNetworks: [
          { name: 'net', addressSpace: ['127.16.0.0/16'], subnets: [{ name: 's', cidr: '127.16.0.0/20' }] },
        ],
        cloudServices: Array.from({ length: services }, (_, i) => ({
          name: `svc${i}`,
          vnet: 'net',
          vms: Array.from({ length: VMS_PER_SERVICE }, (_, j) => ({ name: `vm${j}`, subnet: 's' })),
        })),
      },
    ],
  });
}

for (const dialect of DIALECTS) {
  describe(`a large apply (${dialect})`, () => {
    test('a topology whose events pass the dialect’s parameter limit applies whole, and cleanly', async () => {
      const t = await makeDialectCloud(dialect, dialect === 'postgres' ? { cluster: await postgres() } : {});
      try {
        const services = SERVICES[dialect];
        const before = await t.store.read((r) => r.lastSeq());
        const result = await applyTopology(t.cloud, topology(services));
        assert.equal(result.changes.filter((c) => c.kind === 'VM').length, services * VMS_PER_SERVICE);
        const vms = await t.cloud.listVms();
        assert.equal(vms.length, services * VMS_PER_SERVICE);
        assert.ok(vms.every((v) => v.state === 'running' && v.dip !== null));
        const appended = (await t.store.read((r) => r.lastSeq())) - before;
        const limit = dialect === 'sqlite' ? SQLITE_MAX_PARAMS : POSTGRES_MAX_PARAMS;
        assert.ok(
          appended * EVENT_PARAMS > limit,
          `${appended} events bind ${appended * EVENT_PARAMS} parameters, not above ${limit}`,
        );
        assert.deepEqual((await t.store.read((r) => fsck(r))).map(formatFinding), []);
      } finally {
        await t.close();
      }
    });
  });
}
