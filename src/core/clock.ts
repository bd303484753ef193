/** Time is passed in, so tests and seeded runs control it. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock that advances by a fixed step at each reading: deterministic event times. */
export function steppingClock(start = Date.UTC(2026, 0, 1), stepMs = 1): Clock {
  let t = start;
  return {
    now: () => {
      const d = new Date(t);
      t += stepMs;
      return d;
    },
  };
}
