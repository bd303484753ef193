/**
 * IPv4 addresses are unsigned 32-bit numbers inside the system and text only at its edges
 * (API, CLI, DNS, drivers). The brand keeps a raw number from passing for an address by accident.
 */
import { VipdipError } from './errors.ts';

export type Ipv4 = number & { readonly __brand: 'Ipv4' };

export interface Cidr {
  /** The network address: host bits are always zero. */
  readonly base: Ipv4;
  readonly prefix: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

export function tryParseIpv4(text: string): Ipv4 | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n as Ipv4;
}

/** Parses dotted-quad text; leading zeros, whitespace and out-of-range octets are refused. */
export function parseIpv4(text: string): Ipv4 {
  const ip = typeof text === 'string' ? tryParseIpv4(text) : undefined;
  if (ip === undefined)
    throw new VipdipError('INVALID_ADDRESS', `"${String(text)}" is not a valid IPv4 address`);
  return ip;
}

export function formatIpv4(ip: Ipv4): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

export function ipv4(n: number): Ipv4 {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${n} is not a 32-bit address`);
  return n as Ipv4;
}

/** Block sizes by prefix length: a table, since `2 ** n` costs ~100 ns on the hot path. */
const BLOCK_SIZES: readonly number[] = Array.from({ length: 33 }, (_, p) => 2 ** (32 - p));

/** The number of addresses in a block of this prefix length. */
export function blockSize(prefix: number): number {
  return BLOCK_SIZES[prefix]!;
}

/** Parses `a.b.c.d/n`; host bits set (`10.0.0.1/24`) are refused rather than silently masked. */
export function parseCidr(text: string): Cidr {
  const bad = (why: string) =>
    new VipdipError('INVALID_CIDR', `"${String(text)}" is not a valid CIDR block: ${why}`);
  if (typeof text !== 'string') throw bad('not text');
  const slash = text.indexOf('/');
  if (slash < 0) throw bad('missing /prefix');
  const base = tryParseIpv4(text.slice(0, slash));
  if (base === undefined) throw bad('bad address');
  const ptext = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]?)$/.test(ptext) || Number(ptext) > 32) throw bad('prefix must be 0 to 32');
  const prefix = Number(ptext);
  if (base % blockSize(prefix) !== 0) throw bad('host bits are set');
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.base)}/${c.prefix}`;
}

/** The last address of the block (its broadcast address). */
export function lastAddress(c: Cidr): Ipv4 {
  return (c.base + blockSize(c.prefix) - 1) as Ipv4;
}

export function cidrContains(c: Cidr, ip: Ipv4): boolean {
  return ip >= c.base && ip <= lastAddress(c);
}

/** True when `inner` lies wholly inside `outer`. */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, inner.base);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base <= lastAddress(b) && b.base <= lastAddress(a);
}
