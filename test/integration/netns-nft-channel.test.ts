/**
 * The long-lived nft channel against the real kernel, in a namespace this test creates and deletes:
 * transactions go in, a refused one is reported and leaves the previous ruleset whole, the channel
 * starts a new `nft -i` after its process is killed, large and multi-line texts take `nft -f`, and
 * `close()` leaves no process behind. Root only.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { NftChannel, oneCommandPerLine } from '../../src/dataplane/netns/nft-channel.ts';
import { makeNamespace, requireNetns, testPrefix } from '../support/netns.ts';

const listSet = (ns: string): string[] => {
  const out = execFileSync('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'set', 'ip', 't', 's'], {
    encoding: 'utf8',
  });
  const j = JSON.parse(out) as { nftables: { set?: { elem?: string[] } }[] };
  return [...(j.nftables.find((x) => x.set !== undefined)?.set?.elem ?? [])].sort();
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('oneCommandPerLine: update lines yes, table blocks and comments no', () => {
  assert.equal(oneCommandPerLine('add element ip t s { 1.2.3.4 }\nadd rule ip t c accept'), true);
  assert.equal(
    oneCommandPerLine('add ct timeout ip t x { protocol tcp; policy = { established: 9 }; }'),
    true,
  );
  assert.equal(oneCommandPerLine('table ip t {\n  chain c {\n  }\n}'), false);
  assert.equal(oneCommandPerLine('add rule ip t c accept # why'), false);
});

test('nft channel: transactions, a refused one, a killed process, large texts, close', async (t) => {
  if (!requireNetns(t)) return;
  const ns = makeNamespace(t, `${testPrefix('nc')}-chan`);
  const ch = new NftChannel(ns);
  t.after(() => ch.close());

  await ch.apply('add table ip t\nadd set ip t s { type ipv4_addr; }\nadd chain ip t c');
  await ch.apply('add element ip t s { 10.0.0.1, 10.0.0.2 }');
  assert.deepEqual(listSet(ns), ['10.0.0.1', '10.0.0.2']);
  assert.equal(ch.stats.interactive, 2, 'small one-command-per-line texts take the open process');
  assert.equal(ch.stats.spawned, 1, 'one process for both');
  const pid = ch.pid;
  assert.ok(pid !== undefined && alive(pid));

  // Refused by the kernel (the element to delete is not there): the whole line is refused, so the
  // element added before it in the same transaction is not in force either.
  await assert.rejects(
    ch.apply('add element ip t s { 10.0.0.3 }\ndelete element ip t s { 10.9.9.9 }'),
    /nft \(in .*\): Error/,
  );
  // Refused by the parser.
  await assert.rejects(ch.apply('add element ip t s { not-an-address }'), /Error/);
  assert.deepEqual(listSet(ns), ['10.0.0.1', '10.0.0.2'], 'the ruleset before the refused ones');
  // The channel goes on after refusals, in the same process.
  await ch.apply('delete element ip t s { 10.0.0.1 }\nadd element ip t s { 10.0.0.4 }');
  assert.deepEqual(listSet(ns), ['10.0.0.2', '10.0.0.4']);
  assert.equal(ch.pid, pid);

  // Killed: the next transaction starts a new process and goes in.
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && ch.pid !== undefined; i++) await new Promise((r) => setTimeout(r, 10));
  await ch.apply('add element ip t s { 10.0.0.5 }');
  assert.deepEqual(listSet(ns), ['10.0.0.2', '10.0.0.4', '10.0.0.5']);
  assert.equal(ch.stats.spawned, 2);
  assert.notEqual(ch.pid, pid);

  // A large text (over 16 KiB) and a multi-line block go through `nft -f`, refusals reported too.
  const many = Array.from({ length: 3000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
  const large = `add element ip t s { ${many.join(', ')} }`;
  assert.ok(large.length > 16 * 1024);
  const fileBefore = ch.stats.file;
  await ch.apply(large);
  assert.equal(listSet(ns).length, 3 + many.length);
  await ch.apply('table ip t {\n  set s2 { type ipv4_addr; elements = { 10.2.0.1 } }\n}\n');
  assert.equal(ch.stats.file, fileBefore + 2);
  await assert.rejects(ch.apply('table ip t {\n  set s3 { type bogus_type; }\n}\n'), /Error/);

  // Concurrent callers are served in order, each with its own outcome.
  const results = await Promise.allSettled([
    ch.apply('add element ip t s { 10.3.0.1 }'),
    ch.apply('delete element ip t s { 10.3.9.9 }'),
    ch.apply('add element ip t s { 10.3.0.2 }'),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );

  const last = ch.pid;
  await ch.close();
  assert.equal(ch.pid, undefined);
  assert.equal(alive(last), false, 'no nft process left after close');
  await assert.rejects(ch.apply('add element ip t s { 10.4.0.1 }'), /closed/);
});
