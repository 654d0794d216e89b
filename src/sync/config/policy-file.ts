// Loads a policy file: the file must parse, each policy is validated on its own, and a bad policy is
// reported (naming the policy and the field) while the others still run.
import { z } from 'zod';
import {
  connectionSchema,
  folderTemplateOf,
  policyFileSchema,
  policySchema,
  type Connection,
  type Policy,
} from './schema';

export interface ConfigIssue {
  /** JSON path, e.g. policies[2].targets.users[0] */
  path: string;
  message: string;
  policyId?: string;
}

export interface LoadedPolicyFile {
  connections: Map<string, Connection>;
  policies: Policy[];
  /** Policies that failed validation: reported, skipped. */
  invalidPolicies: { index: number; policyId?: string; issues: ConfigIssue[] }[];
  /** Days after which a policy deleted from the file has its contacts removed. */
  deletedPolicyGraceDays?: number;
  /** Each valid policy's index in the file's `policies` (messages name the JSON path of a value). */
  policyIndex?: Map<string, number>;
}

export class PolicyFileError extends Error {
  constructor(readonly issues: ConfigIssue[]) {
    super(`policy file is invalid:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

type Issue = { path: PropertyKey[]; message: string; code?: string; errors?: Issue[][] };

/**
 * A value matching none of a union's forms (a filter expression, say) is reported where the form it
 * came closest to failed: the branch whose issues reach deepest, so the path names the bad field.
 */
function flatten(issue: Issue): Issue[] {
  if (issue.code !== 'invalid_union' || !issue.errors?.length) return [issue];
  const depth = (branch: Issue[]): number => Math.max(0, ...branch.map((i) => i.path.length));
  const best = issue.errors.reduce((a, b) => (depth(b) > depth(a) ? b : a));
  if (depth(best) === 0) return [issue];
  return best.flatMap((i) => flatten({ ...i, path: [...issue.path, ...i.path] }));
}

function issuesOf(error: z.ZodError, prefix: readonly PropertyKey[], policyId?: string): ConfigIssue[] {
  return (error.issues as Issue[]).flatMap(flatten).map((i) => ({
    path: formatPath([...prefix, ...i.path]),
    message: i.message,
    ...(policyId ? { policyId } : {}),
  }));
}

/** Parses the file's text. Throws PolicyFileError when the file as a whole is unusable. */
export function parsePolicyFile(text: string): LoadedPolicyFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PolicyFileError([
      { path: '(root)', message: `not valid JSON: ${e instanceof Error ? e.message : String(e)}` },
    ]);
  }
  const file = policyFileSchema.safeParse(json);
  if (!file.success) throw new PolicyFileError(issuesOf(file.error, []));
  const connections = new Map<string, Connection>();
  const fileIssues: ConfigIssue[] = [];
  file.data.connections.forEach((c, i) => {
    const parsed = connectionSchema.safeParse(c);
    if (!parsed.success) return fileIssues.push(...issuesOf(parsed.error, ['connections', i]));
    if (connections.has(parsed.data.id))
      fileIssues.push({
        path: `connections[${i}].id`,
        message: `duplicate connection id "${parsed.data.id}"`,
      });
    connections.set(parsed.data.id, parsed.data);
  });
  if (fileIssues.length > 0) throw new PolicyFileError(fileIssues);

  const policies: Policy[] = [];
  const invalidPolicies: LoadedPolicyFile['invalidPolicies'] = [];
  const seen = new Set<string>();
  const indexOf = new Map<Policy, number>();
  file.data.policies.forEach((raw, index) => {
    const rawId = typeof (raw as { id?: unknown })?.id === 'string' ? (raw as { id: string }).id : undefined;
    const parsed = policySchema.safeParse(raw);
    if (!parsed.success) {
      invalidPolicies.push({
        index,
        ...(rawId ? { policyId: rawId } : {}),
        issues: issuesOf(parsed.error, ['policies', index], rawId),
      });
      return;
    }
    const p = parsed.data;
    const problems: ConfigIssue[] = [];
    if (!connections.has(p.connection))
      problems.push({
        path: `policies[${index}].connection`,
        message: `no connection "${p.connection}" in this file`,
        policyId: p.id,
      });
    if (p.previousIds.includes(p.id))
      problems.push({
        path: `policies[${index}].previousIds`,
        message: `"${p.id}" is this policy's own id`,
        policyId: p.id,
      });
    if (folderTemplateOf(p.folder.name) && p.source.type !== 'directory')
      problems.push({
        path: `policies[${index}].folder.name`,
        message:
          'a folder template ({field}) needs a directory source: a mailbox source has no directory fields',
        policyId: p.id,
      });
    if (seen.has(p.id))
      problems.push({
        path: `policies[${index}].id`,
        message: `duplicate policy id "${p.id}"`,
        policyId: p.id,
      });
    if (p.targets.type === 'groups' && p.targets.groups.length === 0)
      problems.push({
        path: `policies[${index}].targets.groups`,
        message: 'targets of type "groups" need at least one group',
        policyId: p.id,
      });
    if (p.targets.type === 'users' && p.targets.users.length === 0)
      problems.push({
        path: `policies[${index}].targets.users`,
        message: 'targets of type "users" need at least one user',
        policyId: p.id,
      });
    if (problems.length > 0) {
      invalidPolicies.push({ index, policyId: p.id, issues: problems });
      return;
    }
    seen.add(p.id);
    policies.push(p);
    // Its own index: an earlier, invalid policy may carry the same id.
    indexOf.set(p, index);
  });
  // A former id that another policy has now would hand that policy's contacts over: refused.
  for (const p of [...policies]) {
    const taken = p.previousIds.filter((x) => seen.has(x));
    if (taken.length === 0) continue;
    const index = indexOf.get(p)!;
    policies.splice(policies.indexOf(p), 1);
    invalidPolicies.push({
      index,
      policyId: p.id,
      issues: taken.map((x) => ({
        path: `policies[${index}].previousIds`,
        message: `"${x}" is the id of another policy in this file: a former id must be one no policy has now`,
        policyId: p.id,
      })),
    });
  }
  const policyIndex = new Map(policies.map((p) => [p.id, indexOf.get(p)!]));
  return {
    connections,
    policies,
    invalidPolicies,
    deletedPolicyGraceDays: file.data.deletedPolicyGraceDays,
    policyIndex,
  };
}

/** The JSON path of a value in a policy, e.g. policies[2].targets.groups[0] (by id when the index is unknown). */
export function policyPath(
  loaded: Pick<LoadedPolicyFile, 'policyIndex'>,
  policyId: string,
  rest: string,
): string {
  const index = loaded.policyIndex?.get(policyId);
  return index === undefined || index < 0 ? `policy "${policyId}" ${rest}` : `policies[${index}].${rest}`;
}
