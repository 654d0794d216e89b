// Every contact we create carries this extended property; its value names the policy and the source
// object, so a lost reply or lost state is healed by looking the contact up instead of creating a twin.
export const tagPropertyId = 'String {6f1c2a8e-4b7d-4e0a-9c35-d2b8e1f7a604} Name SourceId';

export const tagValue = (policyId: string, sourceKey: string): string => `${policyId}|${sourceKey}`;

export function parseTag(value: string, policyId: string): string | undefined {
  const prefix = `${policyId}|`;
  return value.startsWith(prefix) ? value.slice(prefix.length) : undefined;
}
