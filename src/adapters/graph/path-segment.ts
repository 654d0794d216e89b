// One Graph URL path segment from an id or UPN: percent-encoded so / ? # stay inside it, and never a
// dot-segment, which URL parsing would resolve (`/users/..` is `/`, whatever the encoding).

export function pathSegment(value: string): string {
  if (value === '' || /^(\.|%2e){1,2}$/i.test(value))
    throw new Error(`not usable as a Graph URL path segment: ${JSON.stringify(value)}`);
  return encodeURIComponent(value);
}
