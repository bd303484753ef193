/**
 * Seeded randomness. Everything that draws (addresses, host placement) takes a `Random`, so one seed
 * reproduces a whole run. The generator is sfc32 (Chris Doty-Humphrey's small fast counter), which
 * passes PractRand and is four 32-bit words of state.
 */
export interface Random {
  /** A uniformly distributed integer in [0, n), for 1 ≤ n ≤ 2^32. */
  int(n: number): number;
}

export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    // splitmix32 spreads a small seed over the whole state.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** The next 32 random bits as an unsigned number. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  int(n: number): number {
    if (!(n >= 1 && n <= 0x100000000) || !Number.isInteger(n)) throw new RangeError(`bad bound ${n}`);
    // Rejection sampling: exactly uniform, no modulo bias.
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.u32();
      if (x < limit) return x % n;
    }
  }
}

/** A seed from the system's entropy when the user gave none. */
export function randomSeed(): number {
  return (Math.random() * 0x100000000) >>> 0;
}
