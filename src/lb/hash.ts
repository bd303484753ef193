/**
 * Hashing for the load balancer, both written out here so that their output is fixed by a published
 * algorithm rather than by a library version:
 *
 * * the **flow hash** is the Linux kernel's `jhash()` (Bob Jenkins' lookup3, as include/linux/jhash.h
 *   has it) over the words nftables' `jhash` expression feeds it, reduced to a table slot the way
 *   `nft_jhash_eval` does (`reciprocal_scale`). The userspace balancer of the `local` driver and the
 *   kernel rules of the `netns` driver therefore send the same flow to the same Maglev slot, so both
 *   drivers agree on a flow's backend (proved against the kernel in test/integration/netns-hash.test.ts);
 * * backend names are hashed (for the Maglev permutations) with MurmurHash3 x86_32 (Austin Appleby,
 *   public domain): that runs on the control path only, in userspace for both drivers.
 *
 * The flow hash runs once per new flow. It takes the tuple as numbers and feeds them to the hash as
 * 32-bit words: no string, buffer or array is built, so it allocates nothing.
 */
import type { Distribution, Protocol } from '../core/api-shapes.ts';

/** A new flow as the balancer sees it. Addresses are unsigned 32-bit IPv4 numbers (see core/ip.ts). */
export interface Flow {
  readonly srcIp: number;
  readonly srcPort: number;
  readonly dstIp: number;
  readonly dstPort: number;
  readonly protocol: Protocol;
}

/**
 * The seed of the flow hash (the `seed` of the nft `jhash` expression). A constant, never drawn per
 * process: it is part of the contract between balancers and drivers, like the hash itself. Changing it
 * moves every flow of every deployment.
 */
export const FLOW_HASH_SEED = 0x76697064; // "vipd"

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** One 32-bit block folded into the running hash (the body step of MurmurHash3 x86_32). */
function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** The finalizer: forces every input bit to affect every output bit (avalanche). */
function finish(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86_32 of `bytes` with `seed`, as an unsigned 32-bit number. */
export function murmur3(bytes: Uint8Array, seed = 0): number {
  const n = bytes.length;
  const body = n & ~3;
  let h = seed | 0;
  for (let i = 0; i < body; i += 4) {
    h = mixBlock(h, bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
  }
  const tail = n & 3;
  if (tail > 0) {
    // The tail bytes, little-endian, as the reference's fall-through switch takes them.
    let k = bytes[body]!;
    if (tail > 1) k ^= bytes[body + 1]! << 8;
    if (tail > 2) k ^= bytes[body + 2]! << 16;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  return finish(h, n);
}

const utf8 = new TextEncoder();

/** MurmurHash3 x86_32 of the UTF-8 bytes of `text`. Allocates; for the control path. */
export function murmur3Text(text: string, seed = 0): number {
  return murmur3(utf8.encode(text), seed);
}

/** IANA protocol numbers: the tuple carries what the packet would. */
export const PROTOCOL_NUMBER = { tcp: 6, udp: 17 } as const;

/**
 * The kernel's `jhash()` of `length` bytes given as the 32-bit words it reads from them, with
 * `initval`. The kernel reads each word in the CPU's byte order (`__get_unaligned_cpu32`); the caller
 * passes the words as a little-endian CPU reads them, which is what every machine this runs on is
 * (x86-64, arm64). Only lengths that are a multiple of 4 occur (nft registers are 32-bit words), so the
 * byte-wise tail of the reference reduces to whole words here. Allocates nothing for up to 5 words.
 */
export function jhash(
  w0: number,
  w1: number,
  w2: number,
  w3: number,
  w4: number,
  words: 2 | 3 | 5,
  initval: number,
): number {
  let a = (JHASH_INITVAL + words * 4 + initval) | 0;
  let b = a;
  let c = a;
  let t0 = w0;
  let t1 = w1;
  if (words === 5) {
    a = (a + w0) | 0;
    b = (b + w1) | 0;
    c = (c + w2) | 0;
    // __jhash_mix
    a = (a - c) | 0;
    a ^= rol(c, 4);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rol(a, 6);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rol(b, 8);
    b = (b + a) | 0;
    a = (a - c) | 0;
    a ^= rol(c, 16);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rol(a, 19);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rol(b, 4);
    b = (b + a) | 0;
    t0 = w3;
    t1 = w4;
  } else if (words === 3) {
    c = (c + w2) | 0;
  }
  b = (b + t1) | 0;
  a = (a + t0) | 0;
  // __jhash_final
  c ^= b;
  c = (c - rol(b, 14)) | 0;
  a ^= c;
  a = (a - rol(c, 11)) | 0;
  b ^= a;
  b = (b - rol(a, 25)) | 0;
  c ^= b;
  c = (c - rol(b, 16)) | 0;
  a ^= c;
  a = (a - rol(c, 4)) | 0;
  b ^= a;
  b = (b - rol(a, 14)) | 0;
  c ^= b;
  c = (c - rol(b, 24)) | 0;
  return c >>> 0;
}

const JHASH_INITVAL = 0xdeadbeef | 0;
const rol = (x: number, k: number): number => (x << k) | (x >>> (32 - k));

/** An IPv4 address (an unsigned number) as a little-endian CPU reads its four wire bytes. */
const addrWord = (ip: number): number =>
  ((ip & 0xff) << 24) | (((ip >>> 8) & 0xff) << 16) | (((ip >>> 16) & 0xff) << 8) | (ip >>> 24);
/** A port's two wire bytes followed by the two zero bytes that pad its nft register, read the same way. */
const portWord = (port: number): number => ((port & 0xff) << 8) | ((port >>> 8) & 0xff);

/**
 * The hash of a flow's distribution tuple, an unsigned 32-bit number. Azure's modes, whose tuples all
 * include the destination (the VIP) so that two endpoints do not map a client alike:
 *
 * * `fiveTuple`: source IP, source port, destination IP, destination port, protocol;
 * * `sourceIPProtocol` (3-tuple): source IP, destination IP, protocol;
 * * `sourceIP` (2-tuple): source IP, destination IP. One client lands on one backend whatever its
 *   ports, so several connections of one session (iperf3's, say) meet on one server.
 *
 * Defined as the kernel's `jhash` with {@link FLOW_HASH_SEED} of exactly what the nft expression
 * `jhash ip saddr . tcp sport . ip daddr . tcp dport . meta l4proto` (and its 2- and 3-field
 * forms, see {@link NFT_FLOW_FIELDS}) puts in its registers: each field in wire byte order, padded
 * with zero bytes to a 32-bit register (a port is 2 bytes + 2 zero bytes, the protocol 1 + 3).
 */
export function flowKey(mode: Distribution, f: Flow): number {
  return flowHash(mode, f.srcIp, f.srcPort, f.dstIp, f.dstPort, PROTOCOL_NUMBER[f.protocol]);
}

/**
 * The fields of the nft concatenation each mode hashes, in order, with `PROTO` standing for the
 * endpoint's `tcp` or `udp`: the netns driver renders its rules from this, so the two definitions
 * cannot drift apart.
 */
export const NFT_FLOW_FIELDS: Readonly<Record<Distribution, readonly string[]>> = {
  fiveTuple: ['ip saddr', 'PROTO sport', 'ip daddr', 'PROTO dport', 'meta l4proto'],
  sourceIPProtocol: ['ip saddr', 'ip daddr', 'meta l4proto'],
  sourceIP: ['ip saddr', 'ip daddr'],
};

/**
 * {@link flowKey} on the tuple's numbers, for the per-flow path: a listener knows its own address,
 * port and protocol, and passes the client's as they come off the socket, so no Flow object is built.
 */
export function flowHash(
  mode: Distribution,
  srcIp: number,
  srcPort: number,
  dstIp: number,
  dstPort: number,
  protocolNumber: number,
): number {
  switch (mode) {
    case 'sourceIP':
      return jhash(addrWord(srcIp), addrWord(dstIp), 0, 0, 0, 2, FLOW_HASH_SEED);
    case 'sourceIPProtocol':
      return jhash(addrWord(srcIp), addrWord(dstIp), protocolNumber & 0xff, 0, 0, 3, FLOW_HASH_SEED);
    case 'fiveTuple':
      return jhash(
        addrWord(srcIp),
        portWord(srcPort),
        addrWord(dstIp),
        portWord(dstPort),
        protocolNumber & 0xff,
        5,
        FLOW_HASH_SEED,
      );
  }
}

/**
 * The table slot of a 32-bit hash, as the kernel's `reciprocal_scale(hash, size)` computes it for
 * `jhash … mod size`: `(hash × size) >> 32`, not `hash % size`. Exact in doubles for sizes below 2^21.
 */
export function flowSlot(hash: number, size: number): number {
  return Math.floor((hash * size) / 4294967296);
}
