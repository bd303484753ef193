/**
 * Bearer tokens. A token is shown once, when made, and stored only as its SHA-256. The operator
 * token is written to the state directory (mode 0600) on first start; subscription tokens are made
 * by the operator and see only their subscription.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { VipdipError } from '../core/errors.ts';
import { checkName } from '../lifecycle/index.ts';
import type { Store } from '../store/index.ts';

export type Principal =
  { kind: 'operator'; name: string } | { kind: 'subscription'; subscription: string; name: string };

export { OPERATOR_TOKEN_FILE } from '../core/state-files.ts';

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
export const newToken = () => `vipdip_${randomBytes(32).toString('base64url')}`;

/**
 * How long a verified token is trusted without asking the store again. Another replica may revoke
 * it (or delete its subscription): this bounds how long it keeps working here after that.
 */
export const TOKEN_CACHE_MS = 2000;

export class Tokens {
  /** Verified tokens, by hash, so a request costs one hash and one map lookup. */
  private readonly cache = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  async resolve(token: string): Promise<Principal | undefined> {
    const hash = hashToken(token);
    const hit = this.cache.get(hash);
    if (hit !== undefined && hit.until > this.now()) return hit.principal;
    this.cache.delete(hash);
    const row = await this.store.read((r) => r.tokenByHash(hash));
    if (row === undefined) return undefined;
    let p: Principal;
    if (row.subscription_id === null) p = { kind: 'operator', name: row.name };
    else {
      const sub = await this.store.read((r) => r.subscriptionById(row.subscription_id!));
      if (sub === undefined) return undefined;
      p = { kind: 'subscription', subscription: sub.name, name: row.name };
    }
    this.cache.set(hash, { principal: p, until: this.now() + TOKEN_CACHE_MS });
    return p;
  }

  /**
   * Who a bearer token belonged to when last verified, without asking the store: a fairness key for
   * admission control (admission.ts), which runs before authentication and must cost microseconds.
   * Never an authorization: a stale or forged token only lands in the shared `unverified` key, and
   * the request is authenticated as usual once admitted.
   */
  senderKey(authorization: string | undefined): string {
    const m = /^Bearer ([\x21-\x7e]{1,200})$/.exec(authorization ?? '');
    const hit = m === null ? undefined : this.cache.get(hashToken(m[1]!));
    if (hit === undefined) return 'unverified';
    const p = hit.principal;
    return p.kind === 'operator' ? 'operator' : `subscription ${p.subscription}`;
  }

  /**
   * Forgets the verified tokens of a deleted subscription (the store revoked them with it), so that
   * a new subscription of the same name does not inherit them.
   */
  forgetSubscription(subscription: string): void {
    for (const [hash, { principal: p }] of this.cache) {
      if (p.kind === 'subscription' && p.subscription === subscription) this.cache.delete(hash);
    }
  }

  /** Makes a token; returns it in clear, the only time it is ever seen. */
  async create(name: string, subscription: string | null): Promise<string> {
    checkName('token', name);
    const token = newToken();
    await this.store.write(async (r) => {
      let subId: number | null = null;
      if (subscription !== null) {
        const sub = await r.subscriptionByName(subscription);
        if (sub === undefined)
          throw new VipdipError('NOT_FOUND', `subscription ${subscription} does not exist`);
        subId = sub.id;
      }
      await r.insertToken({
        hash: hashToken(token),
        name,
        subscription_id: subId,
        created_at: new Date().toISOString(),
      });
    });
    return token;
  }

  async list(): Promise<{ name: string; subscription: string | null; createdAt: string }[]> {
    return this.store.read(async (r) => {
      const subs = new Map((await r.subscriptions()).map((s) => [s.id, s.name]));
      return (await r.tokens()).map((t) => ({
        name: t.name,
        subscription: t.subscription_id === null ? null : (subs.get(t.subscription_id) ?? null),
        createdAt: t.created_at,
      }));
    });
  }

  /** Revokes every token of that name (and scope); true when one existed. */
  async revoke(name: string, subscription: string | null): Promise<boolean> {
    const removed = await this.store.write(async (r) => {
      const subs = new Map((await r.subscriptions()).map((s) => [s.name, s.id]));
      const subId = subscription === null ? null : (subs.get(subscription) ?? -1);
      const hits = (await r.tokens()).filter((t) => t.name === name && t.subscription_id === subId);
      for (const t of hits) await r.deleteToken(t.id);
      return hits.map((t) => t.hash);
    });
    for (const h of removed) this.cache.delete(h);
    return removed.length > 0;
  }

  /**
   * Makes sure an operator token exists, written to `file` with mode 0600. Returns true when it was
   * created now (the caller says where it is, once, without printing it).
   */
  async ensureOperatorToken(file: string): Promise<boolean> {
    if (existsSync(file)) {
      const token = readFileSync(file, 'utf8').trim();
      if ((await this.resolve(token))?.kind === 'operator') return false;
    }
    const token = await this.create('operator', null);
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    return true;
  }
}
