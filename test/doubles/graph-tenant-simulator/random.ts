// Seeded randomness, so a generated tenant, latency jitter and faults are reproducible.
export interface Random {
  next(): number;
  int(minInclusive: number, maxExclusive: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
  guid(): string;
  token(bytes: number): string;
}

export function seededRandom(seed: number): Random {
  let a = seed >>> 0 || 0x9e3779b9;
  const next = (): number => {
    // mulberry32
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min));
  const hex = (n: number): string => Array.from({ length: n }, () => int(0, 16).toString(16)).join('');
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => {
      if (items.length === 0) throw new Error('pick from an empty list');
      return items[int(0, items.length)] as T;
    },
    chance: (p) => next() < p,
    guid: () => `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[int(0, 4)]}${hex(3)}-${hex(12)}`,
    token: (bytes) => Buffer.from(Array.from({ length: bytes }, () => int(0, 256))).toString('base64url'),
  };
}
