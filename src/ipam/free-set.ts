/**
 * The set of free offsets 0..size-1 of one address range, with O(1) uniform random draw,
 * O(1) take-specific, O(1) release and amortised O(1) lowest-free, independent of the range's
 * size and occupancy.
 *
 * Random draws use a lazily materialised permutation (a "sparse Fisher–Yates"): the first `free`
 * positions of `perm` hold exactly the free offsets. Position i holds `perm[i] - 1`, or i itself
 * where the cell is still 0, so a fresh Uint32Array (zero-filled, paged in lazily by the OS) is the
 * identity and a /8 costs memory only where it has been touched. `where` is the inverse permutation
 * with the same encoding. A bitset answers "is it bound" and "lowest free" for the sequential policy.
 */
export class FreeSet {
  private readonly perm: Uint32Array;
  private readonly where: Uint32Array;
  private readonly bound: Uint32Array;
  private free: number;
  /** No word below this index has a zero bit: the lowest free offset is at or after it. */
  private lowWord = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 0 || size > 0xffffffff) throw new RangeError(`bad size ${size}`);
    this.perm = new Uint32Array(size);
    this.where = new Uint32Array(size);
    this.bound = new Uint32Array(Math.ceil(size / 32));
    this.free = size;
  }

  get freeCount(): number {
    return this.free;
  }

  get boundCount(): number {
    return this.size - this.free;
  }

  isFree(offset: number): boolean {
    return (
      Number.isInteger(offset) &&
      offset >= 0 &&
      offset < this.size &&
      (this.bound[offset >>> 5]! & (1 << (offset & 31))) === 0
    );
  }

  /** Takes the free offset at position `r` (0 ≤ r < freeCount) of the permutation. */
  takeAt(r: number): number {
    if (!(Number.isInteger(r) && r >= 0 && r < this.free)) {
      throw new RangeError(`position ${r} is not among the ${this.free} free positions`);
    }
    const v = this.valueAt(r);
    this.moveToBoundary(v, r);
    return v;
  }

  /** Takes a given offset; false when it is not free. */
  take(offset: number): boolean {
    if (!this.isFree(offset)) return false;
    this.moveToBoundary(offset, this.positionOf(offset));
    return true;
  }

  /** The lowest free offset, or -1 when none is free. */
  lowestFree(): number {
    const words = this.bound.length;
    for (let w = this.lowWord; w < words; w++) {
      const bits = this.bound[w]!;
      if (bits !== 0xffffffff) {
        this.lowWord = w;
        const bit = 31 - Math.clz32(~bits & (bits + 1));
        const offset = w * 32 + bit;
        return offset < this.size ? offset : -1;
      }
    }
    this.lowWord = words;
    return -1;
  }

  /** Returns an offset to the free set; false when it was not bound. */
  release(offset: number): boolean {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.size || this.isFree(offset)) return false;
    // Swap it with the first bound position, then grow the free prefix over it.
    const p = this.positionOf(offset);
    const q = this.free;
    const other = this.valueAt(q);
    this.place(other, p);
    this.place(offset, q);
    this.free++;
    this.bound[offset >>> 5]! &= ~(1 << (offset & 31));
    if (offset >>> 5 < this.lowWord) this.lowWord = offset >>> 5;
    return true;
  }

  /** Every bound offset (the positions past the free prefix), in no particular order. */
  boundOffsets(): number[] {
    const out: number[] = [];
    for (let pos = this.free; pos < this.size; pos++) out.push(this.valueAt(pos));
    return out;
  }

  private valueAt(pos: number): number {
    const x = this.perm[pos]!;
    return x === 0 ? pos : x - 1;
  }

  private positionOf(value: number): number {
    const x = this.where[value]!;
    return x === 0 ? value : x - 1;
  }

  private place(value: number, pos: number): void {
    this.perm[pos] = value + 1;
    this.where[value] = pos + 1;
  }

  /** Swaps the free value at `pos` with the last free position and shrinks the free prefix. */
  private moveToBoundary(value: number, pos: number): void {
    const last = this.free - 1;
    const other = this.valueAt(last);
    this.place(other, pos);
    this.place(value, last);
    this.free = last;
    this.bound[value >>> 5]! |= 1 << (value & 31);
  }
}
