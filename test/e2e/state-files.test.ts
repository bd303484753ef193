/**
 * The state is private (issue 11, item 6): a fresh `vipdip up` makes its directory 0700 and the
 * database, its WAL and shared-memory files and the operator token 0600; a start over files made
 * wider narrows them again and says so in one line each.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer } from '../support/server.ts';

const FILES = ['state.db', 'state.db-wal', 'state.db-shm', 'operator.token'];
const mode = (p: string) => statSync(p).mode & 0o777;

test('state files are private after a fresh start and after a start over files made 0644', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-modes-'));
  try {
    let srv = await startServer({ dir });
    const state = srv.stateDir;
    assert.equal(mode(state), 0o700);
    for (const f of FILES) {
      if (!existsSync(join(state, f))) continue;
      assert.equal(mode(join(state, f)), 0o600, `${f} is ${mode(join(state, f)).toString(8)}`);
    }
    assert.ok(existsSync(join(state, 'state.db-wal')), 'the WAL file exists while the server runs');
    await srv.stop({ keep: true });

    chmodSync(state, 0o755);
    const widened = FILES.filter((f) => existsSync(join(state, f)));
    for (const f of widened) chmodSync(join(state, f), 0o644);
    srv = await startServer({ dir });
    try {
      assert.equal(mode(state), 0o700);
      for (const f of FILES) {
        if (existsSync(join(state, f))) assert.equal(mode(join(state, f)), 0o600, f);
      }
      const out = srv.output();
      assert.match(out, /\.vipdip was mode 0755; made it 0700/);
      for (const f of widened)
        assert.match(out, new RegExp(`${f.replace('.', '\\.')} was mode 0644; made it 0600`));
    } finally {
      await srv.stop({ keep: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
