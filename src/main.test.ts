import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { isVipdipError } from './core/errors.ts';
import { chooseStore, redact, STATE_DB } from './main.ts';

const dir = mkdtempSync(join(tmpdir(), 'vipdip-main-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const PG = 'postgres://vipdip:secret@127.0.0.1:5432/vipdip';

describe('choosing the store', () => {
  test('without --store or VIPDIP_STORE the state is SQLite in the state directory', () => {
    assert.deepEqual(chooseStore({ stateDir: join(dir, 's1'), env: {} }), {
      kind: 'sqlite',
      path: join(dir, 's1', STATE_DB),
    });
  });

  test('VIPDIP_STORE names the store when --store does not, and --store wins over it', () => {
    assert.deepEqual(chooseStore({ stateDir: dir, env: { VIPDIP_STORE: PG } }), {
      kind: 'postgres',
      url: PG,
    });
    assert.deepEqual(chooseStore({ stateDir: dir, store: 'sqlite:x.db', env: { VIPDIP_STORE: PG } }), {
      kind: 'sqlite',
      path: resolve('x.db'),
    });
    assert.equal(chooseStore({ stateDir: join(dir, 's2'), env: { VIPDIP_STORE: '' } }).kind, 'sqlite');
  });

  test('sqlite:PATH, a plain path and postgresql:// URLs are understood', () => {
    assert.deepEqual(chooseStore({ store: 'sqlite:/tmp/a.db', env: {} }), {
      kind: 'sqlite',
      path: '/tmp/a.db',
    });
    assert.deepEqual(chooseStore({ store: 'sqlite:///tmp/a.db', env: {} }), {
      kind: 'sqlite',
      path: '/tmp/a.db',
    });
    assert.deepEqual(chooseStore({ store: 'rel/b.db', env: {} }), {
      kind: 'sqlite',
      path: resolve('rel/b.db'),
    });
    const alt = 'postgresql://u@db.example.test/vip';
    assert.deepEqual(chooseStore({ store: alt, env: {} }), { kind: 'postgres', url: alt });
  });

  test('another URL scheme is refused with a message that names the accepted forms', () => {
    assert.throws(
      () => chooseStore({ store: 'mysql://u:pw@h/db', env: {} }),
      (e) =>
        isVipdipError(e, 'INVALID_ARGUMENT') && /sqlite:PATH/.test(e.message) && !e.message.includes('pw'),
    );
  });

  test('a printed store URL never shows its password', () => {
    assert.equal(redact(PG), 'postgres://vipdip:***@127.0.0.1:5432/vipdip');
    assert.equal(redact('postgres://u@h/db'), 'postgres://u@h/db');
  });
});
