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
  keyCredentials: { keyId: string; customKeyIdentifier: string | null; endDateTime: string }[];
}

/** The signed-in user lacks the Entra role an operation needs; the message names it. */
export class MissingRoleError extends Error {}

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
   * thumbprint). The first key goes by update; later keys are the rotation's (addKey), not setup's.
   */
  async uploadKey(
    app: Registration,
    cert: { derBase64: string; thumbprint: string; subject: string },
  ): Promise<{ keyId: string; uploaded: boolean }> {
    const mine = (r: Registration) =>
      r.keyCredentials.find((k) => (k.customKeyIdentifier ?? '').toUpperCase() === cert.thumbprint);
    const present = mine(app);
    if (present) return { keyId: present.keyId, uploaded: false };
    const live = app.keyCredentials.filter((k) => new Date(k.endDateTime).getTime() > Date.now());
    if (live.length > 0)
      throw new Error(
        `the app registration holds ${live.length} other certificate(s) but not this one (thumbprint ${cert.thumbprint}): upload the .cer by hand (Certificates & secrets), or remove the other keys, then run \`setup\` again`,
      );
    await asOwner(() =>
      this.graph.api(`/applications/${app.id}`).patch({
        keyCredentials: [
          { type: 'AsymmetricX509Cert', usage: 'Verify', key: cert.derBase64, displayName: cert.subject },
        ],
      }),
    );
    const after = mine(await this.reload(app));
    if (!after) throw new Error('the key was uploaded but the app registration does not list it');
    return { keyId: after.keyId, uploaded: true };
  }
}
