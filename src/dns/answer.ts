/**
 * From one received DNS message to the reply: pure, no sockets. The wire format is dns-packet's in
 * both directions; the only bytes read by hand are the fixed header fields that decide whether a
 * message is worth decoding at all (see `peekHeader`).
 */
import {
  AUTHORITATIVE_ANSWER,
  RECURSION_DESIRED,
  TRUNCATED_RESPONSE,
  decode,
  encode,
  type Answer,
  type DecodedPacket,
  type OptAnswer,
  type Packet,
  type Question,
} from 'dns-packet';
import { scopeOfOptions } from './scope.ts';
import { lookup, type NameRecord, type Zone, type ZoneTable } from './zones.ts';

/** RFC 1035 §4.1.1 and RFC 6891 §9 response codes. */
export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Twelve bits: the low four go in the header, the upper eight in the OPT record. */
  BADVERS: 16,
} as const;
const OPCODE_MASK = 0x7800;
const QR_BIT = 0x8000;
const HEADER_BYTES = 12;
/** A plain UDP reply fits 512 bytes (RFC 1035 §4.2.1), or what the client's EDNS record offers. */
export const CLASSIC_UDP_BYTES = 512;
/** What we offer and accept over UDP with EDNS: the DNS Flag Day 2020 size, which avoids fragments. */
export const EDNS_UDP_BYTES = 1232;
/**
 * The smallest wire size of a question (root name, type, class) and of a resource record (root
 * name, type, class, TTL, length): a header whose counts need more bytes than the message has is
 * malformed, and is refused before the library allocates arrays of the sizes the header claims
 * (dns-packet spends about 3 ms on a 12-byte message whose four counts are 65535).
 */
const MIN_QUESTION_BYTES = 5;
const MIN_RECORD_BYTES = 11;

export interface Header {
  id: number;
  /** The message is a response: never answered, so that two servers cannot bounce errors. */
  response: boolean;
  flags: number;
  counts: readonly [number, number, number, number];
}

/**
 * The fixed header of RFC 1035 §4.1.1 (ID, flags, four counts), or undefined for a message too
 * short to carry one. A FORMERR has to echo the ID, which dns-packet does not tell when it throws.
 */
export function peekHeader(msg: Buffer): Header | undefined {
  if (msg.length < HEADER_BYTES) return undefined;
  const flags = msg.readUInt16BE(2);
  return {
    id: msg.readUInt16BE(0),
    response: (flags & QR_BIT) !== 0,
    flags,
    counts: [msg.readUInt16BE(4), msg.readUInt16BE(6), msg.readUInt16BE(8), msg.readUInt16BE(10)],
  };
}

/** A reply to send, with the UDP size the client accepts (irrelevant over TCP). */
export interface Reply {
  packet: Packet;
  udpLimit: number;
}

/** A reply that says only its code: to a message that could not be decoded, or when overloaded. */
const errorReply = (id: number, requestFlags: number, rcode: number): Reply => ({
  packet: {
    id,
    type: 'response',
    flags: (requestFlags & (OPCODE_MASK | RECURSION_DESIRED)) | rcode,
    questions: [],
  },
  udpLimit: CLASSIC_UDP_BYTES,
});

/** The bare reply with this code to a message, or null when the message gets no reply at all. */
export function failureReply(msg: Buffer, rcode: number): Reply | null {
  const header = peekHeader(msg);
  return header === undefined || header.response ? null : errorReply(header.id, header.flags, rcode);
}

/** ASCII-only lower case: DNS names compare case-insensitively in ASCII only (RFC 4343). */
function asciiLower(name: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(name) ? name.toLowerCase() : name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

function soaRecord(zone: Zone, ttl: number): Answer {
  return { type: 'SOA', name: zone.name, ttl, class: 'IN', data: { ...zone.soa } };
}

/** The records of one existing name for one question type. */
function recordsFor(record: NameRecord, q: Question, ttl: number): Answer[] {
  const out: Answer[] = [];
  // ANY (255) is no RecordType in the typings, though dns-packet decodes it by that name.
  const any = (q.type as string) === 'ANY';
  if ((any || q.type === 'A') && record.a !== null) {
    out.push({ type: 'A', name: q.name, ttl, class: 'IN', data: record.a });
  }
  if (record.apex) {
    if (any || q.type === 'SOA') out.push({ ...soaRecord(record.zone, ttl), name: q.name });
    if (any || q.type === 'NS')
      out.push({ type: 'NS', name: q.name, ttl, class: 'IN', data: record.zone.ns });
  }
  return out;
}

/**
 * Answers one received message from a table, or returns null when it is to be dropped (too short
 * for a header, or a response). Never throws: what dns-packet cannot decode is answered FORMERR.
 */
export function answerMessage(msg: Buffer, table: ZoneTable): Reply | null {
  const header = peekHeader(msg);
  if (header === undefined || header.response) return null;
  const [qd, an, ns, ar] = header.counts;
  if (
    qd !== 1 ||
    an !== 0 ||
    ns !== 0 ||
    HEADER_BYTES + MIN_QUESTION_BYTES + ar * MIN_RECORD_BYTES > msg.length
  ) {
    return errorReply(header.id, header.flags, RCODE.FORMERR);
  }
  let query: DecodedPacket;
  try {
    query = decode(msg);
  } catch {
    return errorReply(header.id, header.flags, RCODE.FORMERR);
  }
  const q = query.questions?.[0];
  if (q === undefined || !sameName(msg, q.name)) return errorReply(header.id, header.flags, RCODE.FORMERR);
  return answerQuery(query, q, header, table);
}

/**
 * True when the question's name, written back by dns-packet, is the bytes received. A name that is
 * not (a label holding a dot, bytes that are not UTF-8, a compression pointer in the question) would
 * be echoed as another name than the one asked, and looked up as one.
 */
function sameName(msg: Buffer, name: string): boolean {
  const written = encode({ questions: [{ name, type: 'A' }] });
  const length = written.length - HEADER_BYTES - 4;
  return written.compare(msg, HEADER_BYTES, HEADER_BYTES + length, HEADER_BYTES, HEADER_BYTES + length) === 0;
}

function answerQuery(query: DecodedPacket, q: Question, header: Header, table: ZoneTable): Reply {
  const opts = (query.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
  if (opts.length > 1 || (opts[0] !== undefined && opts[0].name !== '.')) {
    return errorReply(header.id, header.flags, RCODE.FORMERR);
  }
  const opt = opts[0];
  const udpLimit =
    opt === undefined
      ? CLASSIC_UDP_BYTES
      : Math.min(Math.max(opt.udpPayloadSize, CLASSIC_UDP_BYTES), EDNS_UDP_BYTES);
  const question: Question = { name: q.name, type: q.type, class: q.class ?? 'IN' };
  const reply = (rcode: number, aa: boolean, answers: Answer[] = [], authorities: Answer[] = []): Reply => {
    const packet: Packet = {
      id: header.id,
      type: 'response',
      flags:
        (header.flags & (OPCODE_MASK | RECURSION_DESIRED)) | (aa ? AUTHORITATIVE_ANSWER : 0) | (rcode & 0xf),
      questions: [question],
      answers,
      authorities,
    };
    if (opt !== undefined) {
      const ours: OptAnswer = {
        type: 'OPT',
        name: '.',
        udpPayloadSize: EDNS_UDP_BYTES,
        extendedRcode: rcode >> 4,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        options: [],
      };
      packet.additionals = [ours];
    }
    return { packet, udpLimit };
  };

  if ((header.flags & OPCODE_MASK) !== 0) return reply(RCODE.NOTIMP, false);
  if (opt !== undefined && opt.ednsVersion !== 0) return reply(RCODE.BADVERS, false);
  if (question.class !== 'IN' && question.class !== 'ANY') return reply(RCODE.REFUSED, false);
  // Zone transfers are not offered: the zones are computed, and there are no secondaries.
  if (q.type === 'AXFR' || q.type === 'IXFR') return reply(RCODE.REFUSED, false);

  // Who asks (scope.ts): an option can only narrow the answer. It is never echoed in the reply.
  const scope = scopeOfOptions(opt?.options ?? []);
  const found = lookup(table, asciiLower(q.name), scope);
  const ttl = table.ttlSeconds;
  switch (found.kind) {
    case 'outside':
      // Not a recursive resolver: a name outside our zones is none of our business.
      return reply(RCODE.REFUSED, false);
    case 'nxdomain':
      return reply(RCODE.NXDOMAIN, true, [], [soaRecord(found.zone, ttl)]);
    case 'found': {
      const answers = recordsFor(found.record, question, ttl);
      // NODATA: the name exists, without records of this type (RFC 2308 §2.2).
      return answers.length > 0
        ? reply(RCODE.NOERROR, true, answers)
        : reply(RCODE.NOERROR, true, [], [soaRecord(found.record.zone, ttl)]);
    }
  }
}

/**
 * Encodes a reply for UDP: when it exceeds what the client accepts, the records go and TC is set,
 * so that the client asks again over TCP (RFC 1035 §4.2.1, RFC 7766 §5). Null if it cannot be
 * encoded at all (a name dns-packet decoded but cannot write back).
 */
export function encodeForUdp(reply: Reply): Buffer | null {
  try {
    const full = encode(reply.packet);
    if (full.length <= reply.udpLimit) return full;
    return encode({
      ...reply.packet,
      flags: (reply.packet.flags ?? 0) | TRUNCATED_RESPONSE,
      answers: [],
      authorities: [],
    });
  } catch {
    return null;
  }
}
