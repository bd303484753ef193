/**
 * Who asks a DNS query, and how a relay tells the server: pure, no sockets.
 *
 * A query answered for a VNet sees the public zone and, of the internal zone, only the names of that
 * VNet's VMs; one answered for the internet sees the public zone only; an unscoped one (the host,
 * asking on loopback) sees everything. A relay that knows who asks (the netns world's, by the
 * gateway a query arrived on) adds an EDNS0 option in the local/experimental range (RFC 6891 §9) to
 * the query, so that a DNS server in another process, or on another machine (a standalone agent's
 * relay), answers for that scope without trusting anything but the option.
 *
 * Why the server may honour the option from anyone: a query without it is answered for everything,
 * so an option can only narrow an answer, never widen it. Several scope options narrow to what all
 * of them allow, and one the server cannot read narrows to the public zone. The trust lies with the
 * relay, which removes whatever scope option a client sent before adding its own (`scopeQuery`),
 * and with the network, which lets no tenant reach the server's own address.
 */

/** The EDNS0 option code of the scope: the first of the local/experimental range 65001–65534. */
export const SCOPE_OPTION_CODE = 65001;

export type DnsScope =
  /** Unscoped: every name (loopback, the host). */
  | { readonly kind: 'all' }
  /** The public zone only. */
  | { readonly kind: 'internet' }
  /** The public zone and the VMs of one VNet, `subscription/vnet`. */
  | { readonly kind: 'vnet'; readonly vnet: string };

export const SCOPE_ALL: DnsScope = Object.freeze({ kind: 'all' });
export const SCOPE_INTERNET: DnsScope = Object.freeze({ kind: 'internet' });
export const vnetScope = (subscription: string, vnet: string): DnsScope =>
  Object.freeze({ kind: 'vnet', vnet: `${subscription}/${vnet}` });

/** `vnet SUBSCRIPTION/VNET` or `internet`: the option's data, in ASCII. */
export function formatScope(scope: DnsScope): string {
  return scope.kind === 'vnet' ? `vnet ${scope.vnet}` : scope.kind;
}

const VNET_TEXT = /^vnet ([^\s/]+\/[^\s/]+)$/;

/** The scope an option's data names; anything else narrows to the public zone. */
export function parseScope(data: Buffer | undefined): DnsScope {
  const text = data?.toString('latin1') ?? '';
  const m = VNET_TEXT.exec(text);
  return m !== null ? { kind: 'vnet', vnet: m[1]! } : SCOPE_INTERNET;
}

/**
 * The scope of a query from the options of its OPT record: unscoped without a scope option, else
 * what every scope option allows (two different VNets allow the public zone only).
 */
export function scopeOfOptions(options: readonly { code: number; data?: Buffer | undefined }[]): DnsScope {
  let scope: DnsScope = SCOPE_ALL;
  for (const o of options) {
    if (o.code !== SCOPE_OPTION_CODE) continue;
    const s = parseScope(o.data);
    if (scope.kind === 'all') scope = s;
    else if (scope.kind === 'vnet' && (s.kind !== 'vnet' || s.vnet !== scope.vnet)) scope = SCOPE_INTERNET;
  }
  return scope;
}

// ------------------------------------------------------------------ the relay's side, on the wire

const HEADER_BYTES = 12;
const TYPE_OPT = 41;
/** The UDP size a query gets in the OPT record the relay adds: what a client without EDNS accepts. */
const CLASSIC_UDP_BYTES = 512;
const MAX_MESSAGE_BYTES = 65_535;

/** The offset just past the name at `off`, or -1 if it runs past the end or is not a name. */
function skipName(msg: Buffer, off: number): number {
  for (let labels = 0; off < msg.length && labels < 128; labels++) {
    const len = msg[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= msg.length ? off + 2 : -1;
    if ((len & 0xc0) !== 0) return -1;
    off += 1 + len;
  }
  return -1;
}

interface Rr {
  start: number;
  type: number;
  /** Offset of RDLENGTH; the data follows it. */
  rdlength: number;
  end: number;
}

/** The records of a message after its question section, or undefined if it does not parse. */
function records(msg: Buffer): { additionalsFrom: number; list: Rr[] } | undefined {
  if (msg.length < HEADER_BYTES) return undefined;
  const [qd, an, ns, ar] = [
    msg.readUInt16BE(4),
    msg.readUInt16BE(6),
    msg.readUInt16BE(8),
    msg.readUInt16BE(10),
  ];
  let off = HEADER_BYTES;
  for (let i = 0; i < qd; i++) {
    off = skipName(msg, off);
    if (off < 0 || off + 4 > msg.length) return undefined;
    off += 4;
  }
  const list: Rr[] = [];
  for (let i = 0; i < an + ns + ar; i++) {
    const start = off;
    off = skipName(msg, off);
    if (off < 0 || off + 10 > msg.length) return undefined;
    const rdlength = off + 8;
    const end = rdlength + 2 + msg.readUInt16BE(rdlength);
    if (end > msg.length) return undefined;
    list.push({ start, type: msg.readUInt16BE(off), rdlength, end });
    off = end;
  }
  if (off !== msg.length) return undefined;
  return { additionalsFrom: an + ns, list };
}

/** The options of an OPT record's data without the scope option, or undefined if they do not parse. */
function otherOptions(rdata: Buffer): Buffer | undefined {
  const kept: Buffer[] = [];
  for (let off = 0; off < rdata.length;) {
    if (off + 4 > rdata.length) return undefined;
    const end = off + 4 + rdata.readUInt16BE(off + 2);
    if (end > rdata.length) return undefined;
    if (rdata.readUInt16BE(off) !== SCOPE_OPTION_CODE) kept.push(rdata.subarray(off, end));
    off = end;
  }
  return Buffer.concat(kept);
}

function scopeOption(scope: DnsScope): Buffer {
  const data = Buffer.from(formatScope(scope), 'latin1');
  const out = Buffer.alloc(4 + data.length);
  out.writeUInt16BE(SCOPE_OPTION_CODE, 0);
  out.writeUInt16BE(data.length, 2);
  data.copy(out, 4);
  return out;
}

/**
 * A client's query as the relay passes it on: any scope option the client put in is removed and
 * `scope`'s is added, to the query's OPT record or to one added for it (then `addedOpt`, and the
 * reply goes back through `unscopeReply`). Undefined for a message that does not parse or would
 * grow too long: it is not to be passed on at all, since without its scope it would see more.
 * Everything else (the question's bytes, other options) goes through as it came.
 */
export function scopeQuery(msg: Buffer, scope: DnsScope): { query: Buffer; addedOpt: boolean } | undefined {
  if (scope.kind === 'all') return undefined;
  const parsed = records(msg);
  if (parsed === undefined) return undefined;
  const opts = parsed.list.slice(parsed.additionalsFrom).filter((r) => r.type === TYPE_OPT);
  // Two OPT records are a FORMERR (RFC 6891 §6.1.1) the relay need not pass on.
  if (opts.length > 1) return undefined;
  const option = scopeOption(scope);
  let query: Buffer;
  const opt = opts[0];
  if (opt !== undefined) {
    const others = otherOptions(msg.subarray(opt.rdlength + 2, opt.end));
    if (others === undefined) return undefined;
    const rdlength = Buffer.alloc(2);
    rdlength.writeUInt16BE(others.length + option.length);
    query = Buffer.concat([msg.subarray(0, opt.rdlength), rdlength, others, option, msg.subarray(opt.end)]);
  } else {
    // Root name, type OPT, the classic UDP size, extended RCODE 0, version 0, no flags.
    if (msg.readUInt16BE(10) === 0xffff) return undefined;
    const rr = Buffer.alloc(11);
    rr.writeUInt16BE(TYPE_OPT, 1);
    rr.writeUInt16BE(CLASSIC_UDP_BYTES, 3);
    rr.writeUInt16BE(option.length, 9);
    query = Buffer.concat([msg, rr, option]);
    query.writeUInt16BE(msg.readUInt16BE(10) + 1, 10);
  }
  if (query.length > MAX_MESSAGE_BYTES) return undefined;
  return { query, addedOpt: opt === undefined };
}

/**
 * The server's reply to a query that got its OPT record from the relay, without the OPT record in
 * the reply: the client sent none and must not get one (RFC 6891 §7). Undefined if it does not parse.
 */
export function unscopeReply(reply: Buffer): Buffer | undefined {
  const parsed = records(reply);
  if (parsed === undefined) return undefined;
  const opt = parsed.list.slice(parsed.additionalsFrom).find((r) => r.type === TYPE_OPT);
  if (opt === undefined) return reply;
  const out = Buffer.concat([reply.subarray(0, opt.start), reply.subarray(opt.end)]);
  out.writeUInt16BE(reply.readUInt16BE(10) - 1, 10);
  return out;
}
