/**
 * The picker snapshot: what the per-flow path reads, as grpc-js balancers publish an immutable picker
 * whenever their state changes (packages/grpc-js/src/picker.ts). The control path (health changes, a
 * VM deallocated, a DIP moved) builds a new snapshot and swaps the reference; the hot path only calls
 * `pick()`, a hash and one table lookup, on whichever snapshot it holds. A snapshot never changes after
 * it is built, so a flow in progress never sees a half-updated set.
 */
import { formatIpv4, type Ipv4 } from '../core/index.ts';
import type { Distribution } from '../core/api-shapes.ts';
import { PROTOCOL_NUMBER, flowHash, flowSlot, type Flow } from './hash.ts';
import { buildMaglevTable, checkTableSize, maglevTableSize } from './maglev.ts';

/** One member of an endpoint's load-balanced set. */
export interface Backend {
  /** Stable identity (a VM, say): the Maglev table hashes it, so a backend keeps its slots across changes. */
  readonly id: string;
  /** The DIP, an unsigned 32-bit IPv4 number. */
  readonly address: number;
  /** The local port on the DIP. */
  readonly port: number;
  readonly healthy: boolean;
}

/** A backend as a snapshot holds it: with its address also as text, ready for connect(). */
export interface PickedBackend extends Backend {
  readonly host: string;
}

export interface PickerInput {
  readonly backends: readonly Backend[];
  readonly mode: Distribution;
  /**
   * A prime; by default `maglevTableSize` of the backends listed (healthy or not), the size every
   * driver gives the endpoint, so that a picker built anywhere agrees with them on every flow.
   */
  readonly tableSize?: number;
}

const MODES: readonly Distribution[] = ['fiveTuple', 'sourceIP', 'sourceIPProtocol'];
const NO_SLOTS = new Int32Array(0);

export class PickerSnapshot {
  readonly mode: Distribution;
  readonly tableSize: number;
  /** Every backend given, healthy or not (frozen copies, in the order given): for metrics and display. */
  readonly backends: readonly PickedBackend[];
  /** The backends that receive new flows: the healthy ones, in the order given. */
  readonly healthy: readonly PickedBackend[];
  /** Slot → index into `healthy`; empty when no backend is healthy. */
  readonly #table: Int32Array;

  private constructor(
    mode: Distribution,
    tableSize: number,
    backends: readonly PickedBackend[],
    healthy: readonly PickedBackend[],
    table: Int32Array,
  ) {
    this.mode = mode;
    this.tableSize = tableSize;
    this.backends = backends;
    this.healthy = healthy;
    this.#table = table;
    Object.freeze(this);
  }

  /**
   * Builds a snapshot on the control path: only healthy backends enter the Maglev table. Costs up to a few
   * milliseconds (a 65,537-slot table); never call it per flow. Throws RangeError for a bad table size,
   * a duplicate id or an unknown mode.
   */
  static build(input: PickerInput): PickerSnapshot {
    const { mode, tableSize = maglevTableSize(input.backends.length) } = input;
    if (!MODES.includes(mode)) throw new RangeError(`unknown distribution mode ${JSON.stringify(mode)}`);
    // Copies, so that the caller changing its own objects later cannot reach into a published snapshot.
    const backends = Object.freeze(
      input.backends.map((b) =>
        Object.freeze({
          id: b.id,
          address: b.address,
          port: b.port,
          healthy: b.healthy,
          host: formatIpv4(b.address as Ipv4),
        }),
      ),
    );
    const ids = new Set<string>();
    for (const b of backends) {
      if (ids.has(b.id)) throw new RangeError(`backend ${JSON.stringify(b.id)} is listed twice`);
      ids.add(b.id);
    }
    const healthy = Object.freeze(backends.filter((b) => b.healthy));
    checkTableSize(tableSize, healthy.length);
    const table =
      healthy.length === 0
        ? NO_SLOTS
        : buildMaglevTable(
            healthy.map((b) => b.id),
            tableSize,
          );
    return new PickerSnapshot(mode, tableSize, backends, healthy, table);
  }

  /**
   * The healthy backend for a new flow, or undefined when none is healthy (the caller then refuses
   * the connection rather than letting it hang).
   */
  pick(flow: Flow): PickedBackend | undefined {
    return this.pickTuple(flow.srcIp, flow.srcPort, flow.dstIp, flow.dstPort, PROTOCOL_NUMBER[flow.protocol]);
  }

  /** The hot path: {@link pick} on the tuple's numbers, allocating nothing. */
  pickTuple(
    srcIp: number,
    srcPort: number,
    dstIp: number,
    dstPort: number,
    protocolNumber: number,
  ): PickedBackend | undefined {
    const table = this.#table;
    if (table.length === 0) return undefined;
    // reciprocal_scale, as the kernel reduces `jhash … mod M`: the netns driver's rules pick this slot too.
    return this.healthy[
      table[flowSlot(flowHash(this.mode, srcIp, srcPort, dstIp, dstPort, protocolNumber), table.length)]!
    ];
  }

  /**
   * The flow's backend among those `avoid` does not reject: the Maglev choice when it is acceptable,
   * else another acceptable healthy backend drawn from the same hash (so one tuple always redispatches
   * to the same place, and the flows of a failed backend spread over all the others). Undefined when
   * every healthy backend is rejected. For the retry path and for backends tripped by passive health;
   * costs a hash and at most one pass over the healthy backends.
   */
  pickTupleAvoiding(
    srcIp: number,
    srcPort: number,
    dstIp: number,
    dstPort: number,
    protocolNumber: number,
    avoid: (b: PickedBackend) => boolean,
  ): PickedBackend | undefined {
    const table = this.#table;
    const n = this.healthy.length;
    if (n === 0) return undefined;
    const h = flowHash(this.mode, srcIp, srcPort, dstIp, dstPort, protocolNumber);
    // The same slot as pickTuple (reciprocal_scale), so that "nothing avoided" is the Maglev choice.
    const first = table[flowSlot(h, table.length)]!;
    const chosen = this.healthy[first]!;
    if (!avoid(chosen)) return chosen;
    // The others, from an offset the hash draws, so that a failed backend's flows spread over all of them.
    const others = n - 1;
    const offset = others === 0 ? 0 : (h >>> 16) % others;
    for (let k = 0; k < others; k++) {
      const b = this.healthy[(first + 1 + ((offset + k) % others)) % n]!;
      if (!avoid(b)) return b;
    }
    return undefined;
  }
}
