/**
 * PROXY protocol version 2 (haproxy.org/download/2.6/doc/proxy-protocol.txt), for endpoints whose
 * backends cannot see the client's address on the connection itself: the balancer sends this binary
 * header first on each upstream connection (TCP) or before each datagram (UDP), and the backend reads
 * the original source and destination from it.
 */

/** The 12-byte signature every v2 header starts with. */
export const PROXY_V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
/** Signature, version/command, family/transport, length, and the IPv4 address block. */
export const PROXY_V2_IPV4_LENGTH = 16 + 12;

const CMD_PROXY = 0x21; // version 2, command PROXY
const TCP_OVER_IPV4 = 0x11;
const UDP_OVER_IPV4 = 0x12;

/** The header for one flow; addresses are unsigned 32-bit numbers. */
export function proxyV2Header(
  transport: 'tcp' | 'udp',
  srcIp: number,
  srcPort: number,
  dstIp: number,
  dstPort: number,
): Buffer {
  const b = Buffer.allocUnsafe(PROXY_V2_IPV4_LENGTH);
  PROXY_V2_SIGNATURE.copy(b, 0);
  b[12] = CMD_PROXY;
  b[13] = transport === 'tcp' ? TCP_OVER_IPV4 : UDP_OVER_IPV4;
  b.writeUInt16BE(12, 14);
  b.writeUInt32BE(srcIp >>> 0, 16);
  b.writeUInt32BE(dstIp >>> 0, 20);
  b.writeUInt16BE(srcPort, 24);
  b.writeUInt16BE(dstPort, 26);
  return b;
}

export interface ProxyV2Info {
  /** `proxy` carries addresses; `local` is a health check or the proxy's own connection. */
  command: 'proxy' | 'local';
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
  /** Bytes the header took, TLVs included: the payload starts there. */
  length: number;
}

/**
 * Reads a v2 header at the start of `b`: `undefined` while more bytes are needed, `null` when the
 * bytes cannot be a v2 header (the signature differs), else the header.
 */
export function parseProxyV2(b: Buffer): ProxyV2Info | null | undefined {
  const n = Math.min(b.length, PROXY_V2_SIGNATURE.length);
  if (b.subarray(0, n).compare(PROXY_V2_SIGNATURE.subarray(0, n)) !== 0) return null;
  if (b.length < 16) return undefined;
  const verCmd = b[12]!;
  if (verCmd >> 4 !== 2) return null;
  const length = 16 + b.readUInt16BE(14);
  if (b.length < length) return undefined;
  const family = b[13]!;
  if ((verCmd & 0x0f) === 0 || family >> 4 !== 1 || length < PROXY_V2_IPV4_LENGTH) {
    return { command: 'local', srcIp: 0, srcPort: 0, dstIp: 0, dstPort: 0, length };
  }
  return {
    command: 'proxy',
    srcIp: b.readUInt32BE(16),
    dstIp: b.readUInt32BE(20),
    srcPort: b.readUInt16BE(24),
    dstPort: b.readUInt16BE(26),
    length,
  };
}
