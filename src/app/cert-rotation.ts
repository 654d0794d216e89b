// Zero-touch certificate rotation. Key Vault renews the certificate (a new version at 80 % of its
// life); once a day the app puts the new public key on its own application (addKey, proof signed by
// the registered key), switches its workers to the new version once a token with it succeeds, and
// removes the old key after the overlap (removeKey). Every step is written to the rotation store
// before it moves on, so a crash or a repeated run at any point finds the state and continues.
import { randomUUID } from 'node:crypto';
import type { Connection } from '../sync/config/schema';
import {
  certificateFacts,
  certificateVersions,
  createCredential,
  endpointsOf,
  loadCertificate,
  rotationEnabled,
  type CertificatePem,
} from '../adapters/graph/connection';
import { GraphApplicationKeys, signProof } from '../adapters/graph/application-keys';
import { certificateIdentity, pinsCertificate, type RotationState } from '../adapters/tables/rotation-store';
import type { App } from './composition';
import type { Logger } from './logging';

export const expiryWarningDays = 30;
/** Longer than a Functions invocation may run (10 minutes on Consumption), so a lease outlives its check. */
const leaseMs = 15 * 60_000;
export const expiryErrorDays = 7;

export interface RotationOutcome {
  connection: string;
  /** What changed, in words for the log and the run report. */
  events: string[];
  problem?: string;
}

const explain = (e: unknown): string =>
  e instanceof Error ? e.message.split('\n')[0]!.slice(0, 300) : String(e);

/** One rotation check for every connection that has rotation turned on. */
export async function rotateCertificates(app: App, log: Logger): Promise<RotationOutcome[]> {
  const loaded = await app.policies();
  const out: RotationOutcome[] = [];
  for (const connection of loaded.connections.values()) {
    if (!rotationEnabled(connection)) continue;
    const outcome: RotationOutcome = { connection: connection.id, events: [] };
    const holder = randomUUID();
    const now = app.now();
    const held = await app.rotationStore
      .acquireLease(connection.id, holder, now, new Date(now.getTime() + leaseMs))
      .catch((e: unknown) => {
        outcome.problem = explain(e);
        return false;
      });
    if (held) {
      try {
        await rotateConnection(app, connection, outcome);
      } catch (e) {
        outcome.problem = explain(e);
        // Under the lease, so a concurrent check's progress is never overwritten.
        await recordProblem(app, connection, outcome.problem).catch(() => undefined);
      } finally {
        await app.rotationStore.releaseLease(connection.id, holder).catch(() => undefined);
      }
    } else if (!outcome.problem)
      outcome.events.push('another rotation check is running; this one stands aside');
    for (const ev of outcome.events) log.info(`certificate ${connection.id}: ${ev}`);
    if (outcome.problem) log.error(`certificate ${connection.id}: ${outcome.problem}`);
    out.push(outcome);
  }
  return out;
}

class StateWriter {
  constructor(
    private readonly app: App,
    private readonly connectionId: string,
    public state: RotationState,
    private etag: string | null,
  ) {}

  async save(change: Partial<RotationState>): Promise<void> {
    const next = { ...this.state, ...change };
    for (const [k, v] of Object.entries(change)) if (v === undefined) delete next[k as keyof RotationState];
    this.etag = await this.app.rotationStore.put(this.connectionId, next, this.etag);
    this.state = next;
  }
}

const loader =
  (app: App, connection: Connection) =>
  (version?: string): Promise<CertificatePem> =>
    loadCertificate(connection, () => app.vaultCredential, app.vaultOptions(), version);

async function rotateConnection(app: App, connection: Connection, outcome: RotationOutcome): Promise<void> {
  const load = loader(app, connection);
  const latest = await load();
  const choice = await chooseSigningCertificate(app, connection);
  const keyIdInPolicy = 'keyVaultUrl' in connection.certificate ? connection.certificate.keyId : undefined;
  const usable = choice.row && !choice.notice ? choice.row.state : undefined;
  const writer = new StateWriter(
    app,
    connection.id,
    usable ?? {
      ...certificateIdentity(connection),
      activeVersion: await registeredVersion(app, connection, latest),
      ...(keyIdInPolicy ? { activeKeyId: keyIdInPolicy } : {}),
    },
    choice.row?.etag ?? null,
  );
  if (!usable) {
    await writer.save({});
    if (choice.notice) outcome.events.push(startedOver(choice.notice, choice.row!.state));
  }
  const now = app.now();
  if (latest.version !== writer.state.activeVersion) await rollOn(app, connection, writer, outcome, latest);
  const { retiredVersion, removeAfter } = writer.state;
  if (retiredVersion && removeAfter && now.toISOString() >= removeAfter)
    await removeRetired(app, connection, writer, outcome, await load(writer.state.activeVersion), false);
  await writer.save({
    ...certificateIdentity(connection),
    problem: outcome.problem,
    checkedAt: now.toISOString(),
  });
}

/** The run report line when a row of another certificate is dropped; a key it was to remove is named. */
function startedOver(notice: string, dropped: RotationState): string {
  const left = dropped.retiredKeyId ?? dropped.retiredThumbprint;
  return `started over: ${notice}${left ? `; the old key ${left} it was to remove stays on the application: delete it under Certificates & secrets` : ''}`;
}

/** The certificate workers sign with, and the rotation row it was chosen by. */
export interface SigningChoice {
  cert: CertificatePem;
  /** The connection's rotation row, if any (its state is not used when `notice` is set). */
  row?: { state: RotationState; etag: string };
  /** Why the row's version is not used: it is of another certificate, or gone from Key Vault. */
  notice?: string;
}

const statusOf = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

/**
 * With rotation on, the version the rotation registered; Key Vault's newest when rotation is off, has
 * not run, or its row is of another certificate (vault, name or policy keyId changed) or pins a version
 * Key Vault no longer has. Then the rotation starts over at its next check, so no run fails on it.
 */
export async function chooseSigningCertificate(app: App, connection: Connection): Promise<SigningChoice> {
  const load = loader(app, connection);
  if (!rotationEnabled(connection)) return { cert: await load() };
  const row = await app.rotationStore.get(connection.id);
  if (!row) return { cert: await load() };
  const { activeVersion, certificateName, keyVaultUrl, policyKeyId } = row.state;
  if (!pinsCertificate(row.state, connection))
    return {
      cert: await load(),
      row,
      notice: `the rotation state is of another certificate (${[certificateName, keyVaultUrl, policyKeyId && `key ${policyKeyId}`].filter(Boolean).join(', ')}); workers sign with the newest version of the connection's certificate and the rotation starts over at its next check`,
    };
  try {
    return { cert: await load(activeVersion), row };
  } catch (e) {
    if (statusOf(e) !== 404) throw e;
    return {
      cert: await load(),
      row,
      notice: `the rotation's version ${activeVersion} is not in Key Vault (the certificate changed, or the version was deleted); workers sign with the newest version and the rotation starts over at its next check`,
    };
  }
}

/** Steps 1-3: put Key Vault's newer version on the application, then switch workers to it. */
async function rollOn(
  app: App,
  connection: Connection,
  writer: StateWriter,
  outcome: RotationOutcome,
  latest: CertificatePem,
): Promise<void> {
  const active = await loader(app, connection)(writer.state.activeVersion);
  if (writer.state.pendingVersion !== latest.version)
    await writer.save({ pendingVersion: latest.version, pendingAdded: undefined, pendingKeyId: undefined });
  if (!writer.state.pendingAdded) {
    // A token with the new key means an earlier addKey went through but its reply was lost.
    if (await tokenWorks(connection, latest)) {
      const known =
        writer.state.retiredThumbprint === certificateFacts(latest.pem).thumbprint
          ? writer.state.retiredKeyId
          : undefined;
      await writer.save({ pendingAdded: true, ...(known ? { pendingKeyId: known } : {}) });
      outcome.events.push(
        `version ${latest.version} was already on the application (${known ? `key ${known}` : 'its key id is unknown'})`,
      );
    } else {
      const proof = await signProof(active.pem, connection.applicationObjectId!);
      const added = await new GraphApplicationKeys(
        (await app.graph(connection)).client,
        connection.clientId,
      ).addKey(latest.pem, proof);
      await writer.save({ pendingAdded: true, pendingKeyId: added.keyId });
      outcome.events.push(`added version ${latest.version} to the application (key ${added.keyId})`);
    }
  }
  if (!(await tokenWorks(connection, latest))) {
    outcome.events.push(
      `version ${latest.version} is on the application but not accepted yet; switching later`,
    );
    return;
  }
  await switchTo(app, connection, writer, outcome, active, latest);
}

/** Step 3: workers sign with `latest`; the previous key waits for its overlap, unless it is the same key. */
async function switchTo(
  app: App,
  connection: Connection,
  writer: StateWriter,
  outcome: RotationOutcome,
  active: CertificatePem,
  latest: CertificatePem,
): Promise<void> {
  const old = certificateFacts(active.pem);
  const next = certificateFacts(latest.pem).thumbprint;
  const { retiredThumbprint, retiredKeyId } = writer.state;
  // A previous old key still waiting for its overlap goes now, so only one is ever retired; never
  // when it is the very key being switched to (an older certificate re-imported into Key Vault).
  const nextIsRetired = Boolean(writer.state.retiredVersion) && retiredThumbprint === next;
  if (writer.state.retiredVersion && !nextIsRetired) {
    try {
      await removeRetired(app, connection, writer, outcome, active, true);
    } catch (e) {
      // The switch matters more than the clean-up: report the key left behind and roll on.
      outcome.problem = `could not remove the old key ${retiredKeyId ?? '(id unknown)'} (thumbprint ${retiredThumbprint}): ${explain(e)}; delete it under Certificates & secrets of the app registration`;
    }
  }
  const now = app.now();
  if (old.thumbprint === next) {
    // The same key under a new Key Vault version: nothing to retire.
    await writer.save({ activeVersion: latest.version, ...clearedPending, lastRolledAt: now.toISOString() });
    outcome.events.push(`version ${latest.version} has the same key as the active one; workers use it`);
    return;
  }
  const removeAfter = new Date(now.getTime() + app.settings.CERTIFICATE_OVERLAP_DAYS * 86_400_000);
  await writer.save({
    activeVersion: latest.version,
    activeKeyId: writer.state.pendingKeyId ?? (nextIsRetired ? retiredKeyId : undefined),
    ...clearedPending,
    retiredVersion: active.version,
    retiredKeyId: writer.state.activeKeyId,
    retiredThumbprint: old.thumbprint,
    removeAfter: removeAfter.toISOString(),
    lastRolledAt: now.toISOString(),
  });
  outcome.events.push(
    `rolled: workers now sign with version ${latest.version}; the old key (thumbprint ${old.thumbprint}) goes on ${removeAfter.toISOString().slice(0, 10)}`,
  );
}

const clearedPending = { pendingVersion: undefined, pendingAdded: undefined, pendingKeyId: undefined };

/**
 * First sight: which Key Vault version is the one the admin uploaded? The newest whose key gets a
 * token (Key Vault may already have renewed before rotation was turned on).
 */
async function registeredVersion(app: App, connection: Connection, latest: CertificatePem): Promise<string> {
  if (await tokenWorks(connection, latest)) return latest.version;
  for (const version of await certificateVersions(
    connection,
    () => app.vaultCredential,
    app.vaultOptions(),
  )) {
    if (version === latest.version) continue;
    const cert = await loadCertificate(connection, () => app.vaultCredential, app.vaultOptions(), version);
    if (await tokenWorks(connection, cert)) return version;
  }
  throw new Error(
    `no version of the Key Vault certificate is on the app registration: upload the current .cer (\`m365-contact-sync cert show --out\`) once`,
  );
}

/** Removes the retired key with a proof signed by the active one; a key already gone counts as removed. */
async function removeRetired(
  app: App,
  connection: Connection,
  writer: StateWriter,
  outcome: RotationOutcome,
  signer: CertificatePem,
  early: boolean,
): Promise<void> {
  const { retiredKeyId, retiredThumbprint } = writer.state;
  const now = app.now();
  if (retiredThumbprint === certificateFacts(signer.pem).thumbprint) {
    outcome.events.push(
      `the old version has the key workers sign with (thumbprint ${retiredThumbprint}); kept on the application`,
    );
  } else if (!retiredKeyId) {
    outcome.events.push(
      `the old key (thumbprint ${retiredThumbprint}) has no known key id (uploaded by hand without certificate.keyId, or addKey's reply was lost): delete it under Certificates & secrets (it stops working when it expires)`,
    );
  } else {
    const client = (await app.graph(connection)).client;
    const removed = await new GraphApplicationKeys(client, connection.clientId).removeKey(
      retiredKeyId,
      await signProof(signer.pem, connection.applicationObjectId!),
    );
    outcome.events.push(
      `${removed ? 'removed' : 'already gone:'} the old key ${retiredKeyId} (thumbprint ${retiredThumbprint})${early ? ' before the next roll' : ''}`,
    );
  }
  await writer.save({
    retiredVersion: undefined,
    retiredKeyId: undefined,
    retiredThumbprint: undefined,
    removeAfter: undefined,
    lastRemovedAt: now.toISOString(),
  });
}

/** A token for Graph with exactly this certificate: is its key on the application (and accepted)? */
async function tokenWorks(connection: Connection, cert: CertificatePem): Promise<boolean> {
  try {
    await createCredential(connection, cert).getToken(`${endpointsOf(connection).graphEndpoint}/.default`);
    return true;
  } catch {
    return false;
  }
}

async function recordProblem(app: App, connection: Connection, problem: string): Promise<void> {
  const found = await app.rotationStore.get(connection.id);
  if (found) await app.rotationStore.put(connection.id, { ...found.state, problem }, found.etag);
}

export interface CertificateStatus {
  connection: string;
  version: string;
  thumbprint: string;
  notAfter: string;
  daysLeft: number;
  level: 'ok' | 'warning' | 'error';
  /** A sentence for health, doctor and run reports. */
  summary: string;
  /** What to do, when not ok. */
  fix?: string;
  lastRolledAt?: string;
  lastRemovedAt?: string;
  rotation: 'on' | 'off';
  problem?: string;
  /** Why the rotation's version is not the one signed with (see SigningChoice). */
  notice?: string;
}

/** The certificate workers sign with: days to expiry, rotation history, what to do. */
export async function certificateStatus(
  app: App,
  connection: Connection,
  /** The signing choice when the caller has just made it (Key Vault is then not read again). */
  signing?: SigningChoice,
): Promise<CertificateStatus> {
  const choice = signing ?? (await chooseSigningCertificate(app, connection));
  const active = choice.cert;
  const facts = certificateFacts(active.pem);
  const daysLeft = Math.floor((facts.notAfter.getTime() - app.now().getTime()) / 86_400_000);
  const byExpiry = daysLeft <= expiryErrorDays ? 'error' : daysLeft <= expiryWarningDays ? 'warning' : 'ok';
  const level = choice.notice && byExpiry === 'ok' ? 'warning' : byExpiry;
  const s = choice.notice ? undefined : choice.row?.state;
  const history = [
    s?.lastRolledAt ? `key rolled ${s.lastRolledAt.slice(0, 10)}` : '',
    s?.lastRemovedAt ? `old key removed ${s.lastRemovedAt.slice(0, 10)}` : '',
  ].filter(Boolean);
  const summary = `expires in ${daysLeft} days (${facts.notAfter.toISOString().slice(0, 10)}, thumbprint ${facts.thumbprint})${history.length ? `; ${history.join('; ')}` : ''}${choice.notice ? `; ${choice.notice}` : ''}`;
  const fix = s?.problem
    ? problemFix(s.problem)
    : byExpiry === 'ok'
      ? choice.notice &&
        'nothing, if the newest version is on the app registration (the next rotation check confirms it); otherwise upload its .cer (`m365-contact-sync cert show --out`) and name its key id in certificate.keyId'
      : rotationEnabled(connection)
        ? 'Key Vault has not renewed the certificate in time (it renews at 80 % of its life; an issuer-managed certificate waits on its issuer). Check the certificate in Key Vault (`az keyvault certificate pending show`, `m365-contact-sync cert show`), fix its issuer or renew it by hand (`az keyvault certificate create` with the same name and policy); the app rolls the new version onto the application at its next daily check.'
        : 'renew the certificate in Key Vault and upload the new .cer (`m365-contact-sync cert show --out`), or set applicationObjectId on the connection so the app rolls renewed certificates itself';
  return {
    connection: connection.id,
    version: active.version,
    thumbprint: facts.thumbprint,
    notAfter: facts.notAfter.toISOString(),
    daysLeft,
    level,
    summary,
    ...(fix ? { fix } : {}),
    ...(s?.lastRolledAt ? { lastRolledAt: s.lastRolledAt } : {}),
    ...(s?.lastRemovedAt ? { lastRemovedAt: s.lastRemovedAt } : {}),
    rotation: rotationEnabled(connection) ? 'on' : 'off',
    ...(s?.problem ? { problem: s.problem } : {}),
    ...(choice.notice ? { notice: choice.notice } : {}),
  };
}

/** What to do about the rotation's last problem (it is what blocks the roll, not Key Vault). */
function problemFix(problem: string): string {
  const refused = /\b401\b|Authentication_MissingOrMalformed|missing or malformed/i.test(problem);
  return refused
    ? `Last rotation problem: ${problem} Graph refused the proof of possession: check that the connection's applicationObjectId is the app registration's Object ID (Overview page), not its client id, and that the version workers sign with is still under Certificates & secrets. The app retries at its next daily check.`
    : `Last rotation problem: ${problem} The app retries at its next daily check; if it repeats, act on the message above.`;
}
