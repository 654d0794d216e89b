// Azure RBAC on the blob data plane, which Azurite does not model: an HTTPS front that verifies each
// bearer token's signature with the simulator's key (Azurite's `--oauth basic` checks issuer,
// audience and lifetime only) and the caller's data role, then passes the request to Azurite
// unchanged. Without the role it answers as Azure Storage does: 403 AuthorizationPermissionMismatch
// ("This request is not authorized to perform this operation using this permission.").
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as nodeTls from 'node:tls';
import { StorageSharedKeyCredential } from '@azure/storage-blob';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import { storageResource } from '../doubles/graph-tenant-simulator/identity';
import {
  createCertificateAuthority,
  issueServerCertificate,
} from '../doubles/graph-tenant-simulator/certificates';
import { startAzuriteBlobHttps } from '../../dev/azurite';
import { orClose } from './start-all';

export type BlobDataRole = 'Storage Blob Data Reader' | 'Storage Blob Data Contributor';

export interface StorageRequest {
  method: string;
  path: string;
  auth: 'bearer' | 'shared-key' | 'none';
  /** A bearer token's principal: the user's object id, else the application's client id. */
  principal?: string;
  status: number;
}

export interface StorageRbacFront {
  accountUrl: string;
  /**
   * Role assignments by principal: a signed-in user's object id (a user token's oid, as Azure RBAC
   * assigns roles to a user), else an application's client id.
   */
  roles: Map<string, BlobDataRole>;
  requests: StorageRequest[];
  close(): Promise<void>;
}

const readMethods = new Set(['GET', 'HEAD']);

function storageError(status: number, code: string, message: string) {
  const body = `\uFEFF<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\nRequestId:${randomUUID()}\nTime:${new Date().toISOString()}</Message></Error>`;
  return { status, body, headers: { 'content-type': 'application/xml', 'x-ms-error-code': code } };
}

export async function startStorageRbacFront(
  sim: GraphTenantSimulator,
  azurite: { port: number; accountName: string },
  tls: { key: string; cert: string; ca: string },
): Promise<StorageRbacFront> {
  const roles = new Map<string, BlobDataRole>();
  const requests: StorageRequest[] = [];
  const server: Server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const authorization = req.headers.authorization;
    const auth = authorization?.startsWith('Bearer ')
      ? 'bearer'
      : authorization?.startsWith('SharedKey ')
        ? 'shared-key'
        : 'none';
    const entry: StorageRequest = { method: req.method ?? '', path: req.url ?? '', auth, status: 0 };
    requests.push(entry);
    const answer = (e: ReturnType<typeof storageError>): void => {
      entry.status = e.status;
      res.writeHead(e.status, e.headers).end(e.body);
    };
    void (async () => {
      if (auth === 'bearer') {
        const claims = await sim.identity.verifyAccessToken(authorization, storageResource);
        if ('error' in claims)
          return answer(
            storageError(
              401,
              'InvalidAuthenticationInfo',
              `Server failed to authenticate the request. ${claims.error}`,
            ),
          );
        entry.principal = claims.user?.id ?? claims.appId;
        const role = roles.get(entry.principal);
        const allowed = role === 'Storage Blob Data Contributor' || (role && readMethods.has(entry.method));
        if (!allowed)
          return answer(
            storageError(
              403,
              'AuthorizationPermissionMismatch',
              'This request is not authorized to perform this operation using this permission.',
            ),
          );
      }
      const upstream = request(
        {
          host: '127.0.0.1',
          port: azurite.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: `127.0.0.1:${azurite.port}` },
          ca: tls.ca,
        },
        (up) => {
          entry.status = up.statusCode ?? 0;
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', (e) => res.destroy(e));
      req.pipe(upstream);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    accountUrl: `https://127.0.0.1:${port}/${azurite.accountName}`,
    roles,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface RbacBlobStorage extends StorageRbacFront {
  /** PEM of the CA that signed both servers' certificates (for NODE_EXTRA_CA_CERTS). */
  caPem: string;
  /** Azurite's development account key, for the test's own set-up (as an owner with keys would). */
  sharedKey: StorageSharedKeyCredential;
}

/**
 * Azurite over HTTPS behind the RBAC front, both with certificates of a CA made here; this process
 * trusts that CA (tests only: the product never turns certificate checks off).
 */
export async function startRbacBlobStorage(sim: GraphTenantSimulator, dir: string): Promise<RbacBlobStorage> {
  const ca = await createCertificateAuthority('CN=Storage Test CA');
  const server = await issueServerCertificate(ca);
  const files = { cert: join(dir, 'azurite-cert.pem'), key: join(dir, 'azurite-key.pem') };
  writeFileSync(files.cert, server.certificatePem + ca.cert.certificatePem);
  writeFileSync(files.key, server.privateKeyPem, { mode: 0o600 });
  const current = nodeTls.getCACertificates('default');
  if (!current.includes(ca.cert.certificatePem))
    nodeTls.setDefaultCACertificates([...current, ca.cert.certificatePem]);
  const azurite = await startAzuriteBlobHttps(files);
  const front = await orClose([azurite], () =>
    startStorageRbacFront(
      sim,
      { port: azurite.port, accountName: 'devstoreaccount1' },
      { key: server.privateKeyPem, cert: server.certificatePem, ca: ca.cert.certificatePem },
    ),
  );
  return {
    ...front,
    caPem: ca.cert.certificatePem,
    sharedKey: new StorageSharedKeyCredential(
      'devstoreaccount1',
      // Azurite's well-known development key (public, documented; not a secret).
      'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
    ),
    close: async () => {
      await front.close();
      await azurite.close();
    },
  };
}
