/**
 * Endpoint ACLs, evaluated on numbers before a backend is chosen. Azure's semantics: rules are taken
 * in ascending `order` and the first whose remote subnet holds the client decides; a client no rule
 * matches is denied when any permit rule exists (the list is then an allow-list) and permitted
 * otherwise (a deny-list, or no list at all).
 */
import { VipdipError } from '../core/errors.ts';
import { lastAddress, parseCidr } from '../core/ip.ts';
import type { AclRule } from '../core/api-shapes.ts';

/** True when the client at `srcIp` (an unsigned 32-bit IPv4 number) may reach the endpoint. */
export type AclCheck = (srcIp: number) => boolean;

const permitAll: AclCheck = () => true;

/**
 * Compiles rules once, on the control path, into a check for the per-flow path that parses nothing
 * and allocates nothing: two range comparisons per rule. Throws on a malformed subnet
 * (INVALID_CIDR) or two rules with the same order (INVALID_ARGUMENT), which would leave "first" undefined.
 */
export function compileAcl(rules: readonly AclRule[]): AclCheck {
  if (rules.length === 0) return permitAll;
  const sorted = [...rules].sort((a, b) => a.order - b.order);
  const n = sorted.length;
  const first = new Uint32Array(n);
  const last = new Uint32Array(n);
  const permit = new Uint8Array(n);
  let anyPermit = false;
  for (let i = 0; i < n; i++) {
    const r = sorted[i]!;
    if (i > 0 && sorted[i - 1]!.order === r.order) {
      throw new VipdipError('INVALID_ARGUMENT', `ACL order ${r.order} is used twice`);
    }
    const cidr = parseCidr(r.remoteSubnet);
    first[i] = cidr.base;
    last[i] = lastAddress(cidr);
    permit[i] = r.action === 'permit' ? 1 : 0;
    anyPermit ||= r.action === 'permit';
  }
  const unmatched = !anyPermit;
  return (srcIp) => {
    const ip = srcIp >>> 0;
    for (let i = 0; i < n; i++) {
      if (ip >= first[i]! && ip <= last[i]!) return permit[i] === 1;
    }
    return unmatched;
  };
}
