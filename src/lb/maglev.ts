/**
 * Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
 * Balancer", NSDI 2016, §3.4). Each backend prefers the slots of a lookup table in its own
 * permutation order; backends take turns claiming their next preferred free slot until the table is
 * full. The result is near-perfect balance (every backend holds ⌊M/N⌋ or ⌈M/N⌉ slots) and little
 * movement when the set changes.
 *
 * The table depends only on the *set* of backend names and the size: names are hashed with a fixed
 * MurmurHash3 seed and take their turns in sorted order, so every balancer (every process, every host)
 * given the same backends builds the same table and sends a flow to the same backend.
 */
import { murmur3Text } from './hash.ts';

/** The and the paper's default table size: prime, and above 100 × N for up to 655 backends. */
export const MAGLEV_TABLE_SIZE_DEFAULT = 65537;

/**
 * The table sizes an endpoint takes, smallest first: primes about four times apart above a first
 * step for one backend. An endpoint's table is the smallest of them with at least 100 slots per
 * backend it lists (the paper's M > 100 × N, which keeps every backend within 1 % of its share),
 * never above the operator's largest size. Most services have a handful of VMs: 1,021 slots serve up
 * to ten as evenly as 65,537 would, and the kernel's map of them loads 64 times faster; one backend
 * needs no more than 101 (a world of 1,000 one-VM services held a million slots at 1,021 each, six
 * seconds of `nft` in one apply). The size follows the number of backends *listed*, healthy or not,
 * so a probe failing or passing never resizes the table; only a service growing or shrinking across
 * a step (1 → 2, 10 → 11, 40 → 41, 163 → 164 backends) does, and then new flows are hashed afresh
 * once while established ones keep their backend (the local driver's flow table, the kernel's
 * conntrack). From one backend to two that costs nothing: half the flows move to the new backend at
 * any size. A step between two and three, a common change, would move two thirds instead of one.
 */
export const MAGLEV_TABLE_LADDER: readonly number[] = [101, 1021, 4093, 16381, 65537];

/**
 * The table size for an endpoint that lists `backends` backends: the smallest size of the ladder
 * holding 100 slots per backend and not above `largest`, else `largest` itself. Every driver sizes an
 * endpoint's table with this function, so that they agree on every flow's backend.
 */
export function maglevTableSize(backends: number, largest: number = MAGLEV_TABLE_SIZE_DEFAULT): number {
  const want = 100 * Math.max(1, backends);
  for (const size of MAGLEV_TABLE_LADDER) if (size >= want && size <= largest) return size;
  return largest;
}

/** Seeds of the two name hashes: constants, part of the contract between balancers. */
const OFFSET_SEED = 0x6f666673; // "offs"
const SKIP_SEED = 0x736b6970; // "skip"

/** True when `n` is a prime number (trial division: table sizes are small enough). */
export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  if (n % 3 === 0) return n === 3;
  for (let d = 5; d * d <= n; d += 6) {
    if (n % d === 0 || n % (d + 2) === 0) return false;
  }
  return true;
}

/**
 * Refuses a table size that is not prime (a permutation must visit every slot, which needs a prime
 * size) or that is smaller than the number of backends (every backend must own a slot).
 */
export function checkTableSize(size: number, backends: number): void {
  if (!isPrime(size)) throw new RangeError(`Maglev table size ${size} is not a prime number`);
  // The flow slot is (hash × size) >> 32 computed in doubles (see flowSlot): exact only below 2^21.
  if (size >= 2 ** 21) throw new RangeError(`Maglev table size ${size} is not below 2^21`);
  if (size < backends) {
    throw new RangeError(`Maglev table size ${size} is smaller than the number of backends (${backends})`);
  }
}

/**
 * A backend's preference order over a table of `size` slots: slot j of the order is
 * `(offset + j × skip) mod size`. With a prime size and 1 ≤ skip < size it visits every slot once.
 */
export function maglevPermutation(name: string, size: number): { offset: number; skip: number } {
  return {
    offset: murmur3Text(name, OFFSET_SEED) % size,
    skip: (murmur3Text(name, SKIP_SEED) % (size - 1)) + 1,
  };
}

/** Compares by UTF-16 code units: the same order in every locale and process. */
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Builds the Maglev lookup table for `backends` (unique names). Each entry is the index of a backend
 * in `backends`, or -1 throughout when there is none. The same set of names gives the same assignment
 * of names to slots whatever their order in the array. Throws RangeError for a non-prime size, a size
 * below the number of backends, or a name given twice.
 */
export function buildMaglevTable(
  backends: readonly string[],
  size: number = MAGLEV_TABLE_SIZE_DEFAULT,
): Int32Array {
  const n = backends.length;
  checkTableSize(size, n);
  const table = new Int32Array(size).fill(-1);
  if (n === 0) return table;

  // Turns are taken in name order, never in input order: the order of turns decides who wins a
  // contested slot, and it must not depend on how the caller happened to list the backends.
  const turn = Array.from({ length: n }, (_, i) => i).sort((a, b) => byCodeUnits(backends[a]!, backends[b]!));
  const next = new Float64Array(n); // the slot each backend tries next; doubles: offset + skip may pass 2^31
  const skip = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    const name = backends[turn[t]!]!;
    if (t > 0 && backends[turn[t - 1]!] === name) {
      throw new RangeError(`Maglev backend ${JSON.stringify(name)} is listed twice`);
    }
    const p = maglevPermutation(name, size);
    next[t] = p.offset;
    skip[t] = p.skip;
  }

  let filled = 0;
  for (;;) {
    for (let t = 0; t < n; t++) {
      const s = skip[t]!;
      let c = next[t]!;
      // Walks this backend's permutation to its first free slot; it ends, since the table is not full
      // and the permutation visits every slot.
      while (table[c] !== -1) {
        c += s;
        if (c >= size) c -= size;
      }
      table[c] = turn[t]!;
      c += s;
      next[t] = c >= size ? c - size : c;
      if (++filled === size) return table;
    }
  }
}
