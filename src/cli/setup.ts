// `m365-contact-sync setup`: from an empty tenant to a first policy that syncs. The admin answers a
// few questions, signs in with the device code flow, and then each step reads what exists before it
// writes, in an order where every object names the one before it: a run stopped anywhere (Ctrl-C, a
// lost reply, a missing role) leaves objects a re-run finds and finishes, never a duplicate.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { DeviceCodeCredential, type TokenCredential } from '@azure/identity';
import { Client } from '@microsoft/microsoft-graph-client';
import { TokenCredentialAuthenticationProvider } from '@microsoft/microsoft-graph-client/authProviders/azureTokenCredentials';
import { decodeJwt } from 'jose';
import { certificateFacts, clouds } from '../adapters/graph/connection';
import { parsePolicyFile, PolicyFileError } from '../sync/config/policy-file';
import { policySchema, type Connection, type PolicyInput } from '../sync/config/schema';
import { neededPermissions } from '../app/diagnostics';
import {
  askSetup,
  confirmOverwrite,
  confirmUpload,
  defaultSignInClientId,
  firstPolicy,
  type SetupAnswers,
  type SetupFlags,
} from './setup-answers';
import { noStorageToken, uploadPolicyFile } from './setup-upload';
import { AppRegistrar, SetupStoppedError, type Registration } from './setup-entra';
import { proofFromVault, vaultCertificate, type VaultAccess } from './setup-vault';
import { scopeScript } from './scope-script';
import type { Io } from './commands';

export const setupSteps = [
  'sign in',
  'app registration',
  'service principal',
  'permissions',
  'admin consent',
  'certificate',
  'key upload',
  'policy file',
  'policy upload',
  'mailbox scope',
  'doctor',
] as const;

/** Delegated Microsoft Graph scopes setup needs, and nothing else. */
const adminScopes = ['Application.ReadWrite.All', 'AppRoleAssignment.ReadWrite.All'];

/**
 * What the sign-in asks Graph for. Azure CLI's client takes `.default` only (Entra refuses its named
 * scopes with AADSTS65002; its preauthorized set includes `adminScopes`); another client, by name.
 */
export function graphScopes(graphEndpoint: string, signInClientId: string): string[] {
  return signInClientId === defaultSignInClientId
    ? [`${graphEndpoint}/.default`]
    : adminScopes.map((s) => `${graphEndpoint}/${s}`);
}

/** Azure Storage's audience, the same in every cloud. */
const storageScope = 'https://storage.azure.com/.default';

const knownAuthorities = new Set(Object.values(clouds).map((c) => new URL(c.authorityHost).host));

interface Context {
  io: Io;
  answers: SetupAnswers;
  graphEndpoint: string;
  registrar: AppRegistrar;
  tenantId: string;
  /** The admin's device-code sign-in; it also writes the policy blob (as that user, by Azure RBAC). */
  credential: TokenCredential;
  /** Who signed in, for messages. */
  user: string;
  /** Key Vault as the signed-in admin (Azure RBAC on the user's object id). */
  vault: VaultAccess;
}

export async function setup(
  io: Io,
  flags: SetupFlags,
  runDoctor: (io: Io, file: string, vaultCredential?: TokenCredential) => Promise<number>,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const answers = await askSetup(flags, io.isTTY, env);
  const policy = firstPolicy(answers);
  let current = 0;
  const step = (i: number): void => {
    current = i;
    io.out(`[${i + 1}/${setupSteps.length}] ${setupSteps[i]}`);
  };
  const onInterrupt = (): void => {
    io.err(`\nstopped during "${setupSteps[current]}": run setup again with the same answers to finish`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    step(0);
    const ctx = await signIn(io, answers, flags.upload !== false);
    step(1);
    const { app, created } = await ctx.registrar.application(answers.appName);
    io.out(
      `  ${created ? 'created' : 'found'} app registration "${app.displayName}" (client id ${app.appId})`,
    );
    step(2);
    const sp = await ctx.registrar.servicePrincipal(app.appId);
    io.out(`  ${sp.created ? 'created' : 'found'} its service principal ${sp.id}`);
    step(3);
    const roleIds = await permissions(ctx, app, policy);
    step(4);
    const graph = await ctx.registrar.graphRoles();
    const granted = await ctx.registrar.grant(sp.id, graph.id, roleIds.ids);
    io.out(
      `  ${granted.length ? `granted ${roleIds.names(granted).join(', ')}` : 'every permission already granted'}`,
    );
    step(5);
    const cert = await vaultCertificate(io, ctx.vault);
    step(6);
    const facts = certificateFacts(
      `-----BEGIN CERTIFICATE-----\n${Buffer.from(cert.cer!).toString('base64')}\n-----END CERTIFICATE-----`,
    );
    const key = await ctx.registrar.uploadKey(
      await ctx.registrar.reload(app),
      { derBase64: facts.derBase64, thumbprint: facts.thumbprint, subject: `CN=${answers.appName}` },
      (held) => proofFromVault(io, ctx.vault, app.id, held),
    );
    const how = { update: 'uploaded', addKey: 'added (addKey, the other keys kept)', false: 'found' };
    io.out(
      `  ${how[`${key.uploaded}`]} the certificate's public key (thumbprint ${facts.thumbprint}, key id ${key.keyId})`,
    );
    step(7);
    const connection = connectionFor(answers, ctx, app, key.keyId);
    const file = await writePolicyFile(io, answers, connection, policy, Boolean(flags.yes));
    if (!file) return 2;
    step(8);
    await offerUpload(io, ctx, flags);
    step(9);
    const loaded = parsePolicyFile(await readFile(answers.out, 'utf8'));
    const parsed = loaded.policies.find((p) => p.id === answers.policyId)!;
    for (const line of scopeScript(parsed, loaded.connections.get(answers.connectionId)!, loaded.policies))
      io.out(line);
    step(10);
    return await runDoctor(io, answers.out, ctx.credential);
  } catch (e) {
    if (e instanceof SetupStoppedError) {
      io.err(`setup stopped at "${setupSteps[current]}": ${e.message}`);
      return 1;
    }
    throw e;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
  }
}

async function signIn(io: Io, answers: SetupAnswers, mayUpload: boolean): Promise<Context> {
  const authorityHost = (answers.authorityHost ?? clouds.global.authorityHost).replace(/\/$/, '');
  const graphEndpoint = (answers.graphEndpoint ?? clouds.global.graphEndpoint).replace(/\/$/, '');
  const credential = new DeviceCodeCredential({
    tenantId: answers.tenant,
    clientId: answers.signInClientId,
    authorityHost,
    disableInstanceDiscovery: !knownAuthorities.has(new URL(authorityHost).host),
    userPromptCallback: (info) => io.out(`  ${info.message}`),
    // One sign-in: after it, a token that needs the admin again fails instead of asking for a new code.
    disableAutomaticAuthentication: true,
  });
  const scopes = graphScopes(graphEndpoint, answers.signInClientId);
  // The Azure SDKs ask for CAE tokens and the Graph client does not; MSAL keeps each kind in its own
  // cache, so every request asks for the one kind the sign-in filled.
  const signedInTenant: { id?: string } = {};
  const signedIn: TokenCredential = {
    // Key Vault's challenge names the vault's tenant; the sign-in's own needs no other authority.
    getToken: (s, { tenantId: asked, ...options } = {}) =>
      credential.getToken(s, {
        ...options,
        ...(asked && asked !== signedInTenant.id ? { tenantId: asked } : {}),
        enableCae: true,
      }),
  };
  await credential.authenticate(scopes, { enableCae: true });
  const token = (await signedIn.getToken(scopes))!;
  const claims = decodeJwt(token.token);
  signedInTenant.id = String(claims.tid);
  const user = String(claims.upn ?? claims.unique_name ?? claims.oid);
  io.out(`  signed in as ${user} (tenant ${String(claims.tid)})`);
  // The policy upload needs a Storage token from this sign-in: learn now, before anything is created.
  if (answers.policyBlobUrl && mayUpload)
    await signedIn.getToken(storageScope).catch((e: unknown) => {
      throw new SetupStoppedError(noStorageToken(answers.signInClientId, answers.policyBlobUrl!, e));
    });
  return {
    io,
    answers,
    graphEndpoint,
    credential: signedIn,
    user,
    tenantId: signedInTenant.id,
    vault: { answers, credential: signedIn, user, userObjectId: String(claims.oid) },
    registrar: new AppRegistrar(adminGraph(signedIn, graphEndpoint, scopes)),
  };
}

function adminGraph(credential: TokenCredential, graphEndpoint: string, scopes: string[]): Client {
  const host = new URL(graphEndpoint).host;
  const known = Object.values(clouds).some((c) => new URL(c.graphEndpoint).host === host);
  return Client.initWithMiddleware({
    authProvider: new TokenCredentialAuthenticationProvider(credential, { scopes }),
    baseUrl: graphEndpoint,
    defaultVersion: 'v1.0',
    ...(known ? {} : { customHosts: new Set([new URL(graphEndpoint).hostname]) }),
  });
}

/** The application permissions the policy needs (doctor's list), by id from Graph's service principal. */
async function permissions(
  ctx: Context,
  app: Registration,
  policy: PolicyInput,
): Promise<{ ids: string[]; names: (ids: string[]) => string[] }> {
  const names = neededPermissions([policySchema.parse(policy)]).map((n) => n.permission);
  const graph = await ctx.registrar.graphRoles();
  const unknown = names.filter((n) => !graph.roles.has(n));
  if (unknown.length)
    throw new Error(`Microsoft Graph offers no application permission named ${unknown.join(', ')}`);
  const ids = names.map((n) => graph.roles.get(n)!);
  const added = await ctx.registrar.requirePermissions(app, ids);
  const byId = new Map([...graph.roles].map(([n, id]) => [id, n]));
  ctx.io.out(
    `  ${added.length ? `added ${added.map((id) => byId.get(id)).join(', ')}` : `already listed: ${names.join(', ')}`}`,
  );
  return { ids, names: (list) => list.map((id) => byId.get(id) ?? id) };
}

/** The policy file to the deployment's policy blob, when named and the admin agrees; as the signed-in admin. */
async function offerUpload(io: Io, ctx: Context, flags: SetupFlags): Promise<void> {
  const a = ctx.answers;
  const url = a.policyBlobUrl;
  if (!url) {
    io.out(
      `  not uploaded: name the policy blob (--policy-blob-url "$(azd env get-value POLICY_BLOB_URL)") to upload ${a.out}`,
    );
    return;
  }
  if (!(await confirmUpload(a.out, url, flags, io.isTTY))) {
    io.out(`  not uploaded (--upload, or --yes, uploads it): the deployed app reads ${url}`);
    return;
  }
  const text = await readFile(a.out, 'utf8');
  await uploadPolicyFile(io, {
    blobUrl: url,
    file: a.out,
    text,
    credential: ctx.credential,
    user: ctx.user,
    signInClientId: a.signInClientId,
    replace: flags.upload === true,
  });
}

function connectionFor(
  a: SetupAnswers,
  ctx: Context,
  app: Registration,
  keyId: string,
): Record<string, unknown> {
  return {
    id: a.connectionId,
    tenantId: ctx.tenantId,
    clientId: app.appId,
    applicationObjectId: app.id,
    certificate: { keyVaultUrl: a.vault, name: a.certificate, keyId },
    ...(a.authorityHost && a.graphEndpoint
      ? { authorityHost: a.authorityHost, graphEndpoint: a.graphEndpoint }
      : {}),
  } satisfies Partial<Record<keyof Connection, unknown>>;
}

/**
 * Writes the connection and the policy into the policy file, keeping every other connection and
 * policy there; an unchanged file is not rewritten. Returns false when the admin declined.
 */
async function writePolicyFile(
  io: Io,
  a: SetupAnswers,
  connection: Record<string, unknown>,
  policy: PolicyInput,
  yes: boolean,
): Promise<boolean> {
  let existing: { connections: Record<string, unknown>[]; policies: Record<string, unknown>[] } = {
    connections: [],
    policies: [],
  };
  let before: string | undefined;
  try {
    before = await readFile(a.out, 'utf8');
    existing = JSON.parse(before) as typeof existing;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${a.out}: ${(e as Error).message}`);
  }
  const upsert = <T extends Record<string, unknown>>(list: T[], item: T): T[] => {
    const i = list.findIndex((x) => x.id === item.id);
    return i < 0 ? [...list, item] : list.map((x, j) => (j === i ? item : x));
  };
  const next = {
    ...existing,
    connections: upsert(existing.connections ?? [], connection),
    policies: upsert(existing.policies ?? [], policy as Record<string, unknown>),
  };
  const text = JSON.stringify(next, null, 2) + '\n';
  try {
    parsePolicyFile(text);
  } catch (e) {
    if (e instanceof PolicyFileError)
      throw new Error(
        `the policy file would not be valid: ${e.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      );
    throw e;
  }
  if (text === before) {
    io.out(`  ${a.out} already holds this connection and policy`);
    return true;
  }
  const ours = existing.connections?.some((c) => c.id === a.connectionId) ?? false;
  if (before !== undefined && ours && !(await confirmOverwrite(a.out, io.isTTY, yes))) {
    io.err(`${a.out} left as it was`);
    return false;
  }
  // Written whole to a temporary name, then renamed: an interrupted write leaves the old file.
  const tmp = `${a.out}.setup-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, a.out);
  io.out(`  wrote ${a.out} (connection "${a.connectionId}", policy "${a.policyId}"); validated`);
  return true;
}
