/**
 * Hashing for the load balancer: MurmurHash3 x86_32 (Austin Appleby, public domain), written out here
 * so that its output is fixed by a published algorithm and its test vectors rather than by a library
 * version. Every balancer that hashes the same flow with the same seed picks the same table slot, so
 * several balancers (one per host) agree on a flow's backend without talking to each other.
 *
 * The flow hash runs once per new flow. It takes the tuple as numbers and feeds them to the hash as
 * 32-bit words: no string, buffer or array is built, so it allocates nothing.
 */
import type { Distribution, Protocol } from '../lifecycle/index.ts';

/** A new flow as the balancer sees it. Addresses are unsigned 32-bit IPv4 numbers (see core/ip.ts). */
export interface Flow {
  readonly srcIp: number;
  readonly srcPort: number;
  readonly dstIp: number;
  readonly dstPort: number;
  readonly protocol: Protocol;
}

/**
 * The seed of the flow hash. A constant, never drawn per process: it is part of the contract between
 * balancers, like the hash itself. Changing it moves every flow of every deployment.
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
 * The hash of a flow's distribution tuple, an unsigned 32-bit number. Azure's modes, whose tuples all
 * include the destination (the VIP) so that two endpoints do not map a client alike:
 *
 * * `fiveTuple`: source IP, destination IP, source port, destination port, protocol;
 * * `sourceIPProtocol` (3-tuple): source IP, destination IP, protocol;
 * * `sourceIP` (2-tuple): source IP, destination IP. One client lands on one backend whatever its
 *   ports, so several connections of one session (iperf3's, say) meet on one server.
 *
 * Defined as MurmurHash3 x86_32 with {@link FLOW_HASH_SEED} of these little-endian 32-bit words:
 * `srcIp, dstIp` then, for 3-tuples, `protocol number`, and for 5-tuples
 * `srcPort << 16 | dstPort, protocol number`. Any implementation of MurmurHash3 over those bytes
 * (another process, another language) gets the same value.
 */
export function flowKey(mode: Distribution, f: Flow): number {
  return flowHash(mode, f.srcIp, f.srcPort, f.dstIp, f.dstPort, PROTOCOL_NUMBER[f.protocol]);
}

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
  let h = mixBlock(FLOW_HASH_SEED, srcIp | 0);
  h = mixBlock(h, dstIp | 0);
  switch (mode) {
    case 'sourceIP':
      return finish(h, 8);
    case 'sourceIPProtocol':
      return finish(mixBlock(h, protocolNumber), 12);
    case 'fiveTuple':
      h = mixBlock(h, ((srcPort & 0xffff) << 16) | (dstPort & 0xffff));
      return finish(mixBlock(h, protocolNumber), 16);
  }
}
