/** A read-only view of a map without some keys: no copy of a 50,000-entry snapshot per mailbox. */
export class MapWithout<V> implements ReadonlyMap<string, V> {
  private readonly left: ReadonlySet<string>;
  constructor(
    private readonly all: ReadonlyMap<string, V>,
    left: string | ReadonlySet<string>,
  ) {
    this.left = typeof left === 'string' ? new Set([left]) : left;
  }
  get size(): number {
    let n = this.all.size;
    for (const k of this.left) if (this.all.has(k)) n--;
    return n;
  }
  get(key: string): V | undefined {
    return this.left.has(key) ? undefined : this.all.get(key);
  }
  has(key: string): boolean {
    return !this.left.has(key) && this.all.has(key);
  }
  *entries(): MapIterator<[string, V]> {
    for (const e of this.all) if (!this.left.has(e[0])) yield e;
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
