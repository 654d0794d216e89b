// The Entra ID side of `setup`, as the signed-in admin: the app registration and its service
// principal (found by name, else created), the application permissions (their ids read from
// Microsoft Graph's own service principal by value), admin consent (app role assignments) and the
// certificate's public key. Every call first reads what exists, so a repeated run changes nothing.
import type { Client } from '@microsoft/microsoft-graph-client';

/** Microsoft Graph's application id, the same in every tenant. */
export const graphAppId = '00000003-0000-0000-c000-000000000000';

export interface Registration {
  /** Object id (the connection's applicationObjectId). */
  id: string;
  /** Application (client) id. */
  appId: string;
  displayName: string;
  requiredResourceAccess: { resourceAppId: string; resourceAccess: { id: string; type: string }[] }[];
  keyCredentials: {
    keyId: string;
    customKeyIdentifier: string | null;
    startDateTime: string;
    endDateTime: string;
  }[];
}

/** Setup cannot go on without the admin doing something first; the message says what. */
export class SetupStoppedError extends Error {}

/** The signed-in user lacks the Entra role an operation needs; the message names it. */
export class MissingRoleError extends SetupStoppedError {}

/** A key on the app registration, as Graph lists it (thumbprint = customKeyIdentifier). */
export interface HeldKey {
  keyId: string;
  thumbprint: string;
  startDateTime: string;
  endDateTime: string;
}

/**
 * Signs addKey's proof of possession with the private part of one of `held` (the registration's
 * valid keys); undefined when none of them is at hand.
 */
export type ProofSigner = (held: HeldKey[]) => Promise<string | undefined>;

const appFields = 'id,appId,displayName,requiredResourceAccess,keyCredentials';
const odataString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

function statusOf(e: unknown): number | undefined {
  return typeof e === 'object' && e !== null && 'statusCode' in e ? Number(e.statusCode) : undefined;
}

/** An update of the app registration: its owner may, else Cloud Application Administrator. */
async function asOwner(update: () => Promise<unknown>): Promise<void> {
  try {
    await update();
  } catch (e) {
    if (statusOf(e) === 403)
      throw new MissingRoleError(
        'updating this app registration needs one of its owners, or the Cloud Application Administrator role: ask for it (or have its owner run `setup`), then run `setup` again',
      );
    throw e;
  }
}

export class AppRegistrar {
  constructor(private readonly graph: Client) {}

  /** The single-tenant app registration named `name`: found, else created. Two of that name: an error. */
  async application(name: string): Promise<{ app: Registration; created: boolean }> {
    const found = (await this.graph
      .api('/applications')
      .query({ $filter: `displayName eq ${odataString(name)}`, $select: appFields })
      .get()) as { value: Registration[] };
    if (found.value.length > 1)
      throw new Error(
        `${found.value.length} app registrations are named "${name}" (${found.value.map((a) => a.appId).join(', ')}): delete the extra ones, or choose another name with --app-name`,
      );
    if (found.value[0]) return { app: found.value[0], created: false };
    const app = (await this.graph
      .api('/applications')
      .post({ displayName: name, signInAudience: 'AzureADMyOrg' })) as Registration;
    return { app, created: true };
  }

  async reload(app: Registration): Promise<Registration> {
    return (await this.graph.api(`/applications/${app.id}`).select(appFields).get()) as Registration;
  }

  /** The app's service principal in this tenant (tokens need one): found, else created. */
  async servicePrincipal(appId: string): Promise<{ id: string; created: boolean }> {
    const found = (await this.graph
      .api('/servicePrincipals')
      .query({ $filter: `appId eq ${odataString(appId)}`, $select: 'id,appId' })
      .get()) as { value: { id: string }[] };
    if (found.value[0]) return { id: found.value[0].id, created: false };
    const sp = (await this.graph.api('/servicePrincipals').post({ appId })) as { id: string };
    return { id: sp.id, created: true };
  }

  /** Microsoft Graph's service principal and its application permissions' ids by name. */
  async graphRoles(): Promise<{ id: string; roles: Map<string, string> }> {
    const found = (await this.graph
      .api('/servicePrincipals')
      .query({ $filter: `appId eq '${graphAppId}'`, $select: 'id,appRoles' })
      .get()) as {
      value: { id: string; appRoles: { id: string; value: string; allowedMemberTypes: string[] }[] }[];
    };
    const sp = found.value[0];
    if (!sp) throw new Error("Microsoft Graph's service principal is missing from this tenant");
    const roles = new Map(
      sp.appRoles.filter((r) => r.allowedMemberTypes.includes('Application')).map((r) => [r.value, r.id]),
    );
    return { id: sp.id, roles };
  }

  /** Adds the permissions the app registration does not list yet; returns what it added. */
  async requirePermissions(app: Registration, roleIds: string[]): Promise<string[]> {
    const entry = app.requiredResourceAccess.find((r) => r.resourceAppId === graphAppId);
    const have = new Set(entry?.resourceAccess.filter((a) => a.type === 'Role').map((a) => a.id) ?? []);
    const missing = roleIds.filter((id) => !have.has(id));
    if (missing.length === 0) return [];
    const others = app.requiredResourceAccess.filter((r) => r.resourceAppId !== graphAppId);
    const resourceAccess = [...(entry?.resourceAccess ?? []), ...missing.map((id) => ({ id, type: 'Role' }))];
    await asOwner(() =>
      this.graph
        .api(`/applications/${app.id}`)
        .patch({ requiredResourceAccess: [...others, { resourceAppId: graphAppId, resourceAccess }] }),
    );
    return missing;
  }

  /** Admin consent: an app role assignment per permission not granted yet; returns what it granted. */
  async grant(principalId: string, graphSpId: string, roleIds: string[]): Promise<string[]> {
    const held = (await this.graph.api(`/servicePrincipals/${principalId}/appRoleAssignments`).get()) as {
      value: { appRoleId: string; resourceId: string }[];
    };
    const granted = new Set(held.value.filter((a) => a.resourceId === graphSpId).map((a) => a.appRoleId));
    const missing = roleIds.filter((id) => !granted.has(id));
    for (const appRoleId of missing) {
      try {
        await this.graph
          .api(`/servicePrincipals/${graphSpId}/appRoleAssignedTo`)
          .post({ principalId, resourceId: graphSpId, appRoleId });
      } catch (e) {
        if (statusOf(e) === 403)
          throw new MissingRoleError(
            'granting admin consent to Microsoft Graph application permissions needs the Privileged Role Administrator role (or Global Administrator); ask for it (or have such an admin run `setup`), then run `setup` again: it continues where it stopped',
          );
        throw e;
      }
    }
    return missing;
  }

  /**
   * Puts the certificate's public key on the app registration unless it is there (matched by
   * thumbprint). A registration without keys gets it by update. One that holds other keys gets it by
   * addKey, whose proof is signed by a key already there: an update of keyCredentials would replace
   * the collection and cut off whatever signs in with those keys, so setup never does that.
   */
  async uploadKey(
    app: Registration,
    cert: { derBase64: string; thumbprint: string; subject: string },
    signProof: ProofSigner,
  ): Promise<{ keyId: string; uploaded: 'update' | 'addKey' | false }> {
    const present = findKey(app, cert.thumbprint);
    if (present) return { keyId: present.keyId, uploaded: false };
    const keyCredential = {
      type: 'AsymmetricX509Cert',
      usage: 'Verify',
      key: cert.derBase64,
      displayName: cert.subject,
    };
    if (app.keyCredentials.length === 0) {
      await asOwner(() =>
        this.graph.api(`/applications/${app.id}`).patch({ keyCredentials: [keyCredential] }),
      );
      const after = findKey(await this.reload(app), cert.thumbprint);
      if (!after) throw new Error('the key was uploaded but the app registration does not list it');
      return { keyId: after.keyId, uploaded: 'update' };
    }
    const held = app.keyCredentials.map((k) => ({
      keyId: k.keyId,
      thumbprint: (k.customKeyIdentifier ?? '').toUpperCase(),
      startDateTime: k.startDateTime,
      endDateTime: k.endDateTime,
    }));
    // Graph takes a proof only from a key valid now: started, and not expired.
    const now = Date.now();
    const valid = held.filter(
      (k) => new Date(k.startDateTime).getTime() <= now && now < new Date(k.endDateTime).getTime(),
    );
    const proof = valid.length > 0 ? await signProof(valid) : undefined;
    if (!proof) throw new SetupStoppedError(cannotAddKey(held, valid, cert.thumbprint));
    let added: { keyId?: unknown } | undefined;
    await asOwner(async () => {
      added = (await this.graph
        .api(`/applications/${app.id}/addKey`)
        .post({ keyCredential, passwordCredential: null, proof })) as { keyId?: unknown };
    });
    if (typeof added?.keyId !== 'string') throw new Error('addKey answered without a keyId');
    return { keyId: added.keyId, uploaded: 'addKey' };
  }
}

function findKey(app: Registration, thumbprint: string): Registration['keyCredentials'][number] | undefined {
  return app.keyCredentials.find((k) => (k.customKeyIdentifier ?? '').toUpperCase() === thumbprint);
}

/** Why the key cannot be added, and what the admin can do about it. */
function cannotAddKey(held: HeldKey[], valid: HeldKey[], thumbprint: string): string {
  const list = (keys: HeldKey[]): string =>
    keys.map((k) => `${k.thumbprint || k.keyId} (${k.startDateTime} to ${k.endDateTime})`).join(', ');
  const why =
    valid.length === 0
      ? `the app registration holds no certificate valid now, only expired or not yet started ones (${list(held)}); Graph's addKey needs a valid one to sign its proof of possession`
      : `the app registration holds other certificates (${list(valid)}) whose private keys are not versions of this certificate in Key Vault; Graph's addKey needs a proof signed by one of them`;
  return (
    `${why}, and setup does not replace an app registration's keys (that would cut off whatever signs in with them). ` +
    `Either upload this certificate's public part (thumbprint ${thumbprint}; Key Vault gives it as a .cer) under Certificates & secrets yourself, ` +
    'or remove the certificates nothing uses any more, then run `setup` again'
  );
}
