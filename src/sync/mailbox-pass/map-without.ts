/** A read-only view of a map without one key: no copy of a 50,000-entry snapshot per mailbox. */
export class MapWithout<V> implements ReadonlyMap<string, V> {
  constructor(
    private readonly all: ReadonlyMap<string, V>,
    private readonly left: string,
  ) {}
  get size(): number {
    return this.all.size - (this.all.has(this.left) ? 1 : 0);
  }
  get(key: string): V | undefined {
    return key === this.left ? undefined : this.all.get(key);
  }
  has(key: string): boolean {
    return key !== this.left && this.all.has(key);
  }
  *entries(): MapIterator<[string, V]> {
    for (const e of this.all) if (e[0] !== this.left) yield e;
  }
  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }
  forEach(f: (value: V, key: string, map: ReadonlyMap<string, V>) => void): void {
    for (const [k, v] of this.entries()) f(v, k, this);
  }
}
