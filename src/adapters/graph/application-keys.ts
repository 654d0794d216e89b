// The application rolls its own keys: addKey / removeKey on its application object, authorised by a
// proof-of-possession JWT signed with a key already on the application. No Graph permission needed.
// The proof's shape is documented at learn.microsoft.com/graph/application-rollkey-prooftoken (see
// docs/certificate-rotation.md for the sources).
import { createPrivateKey } from 'node:crypto';
import type { Client } from '@microsoft/microsoft-graph-client';
import { SignJWT } from 'jose';
import { certificateFacts } from './connection';

/** The proof's audience, fixed by the documentation. */
export const proofAudience = '00000002-0000-0000-c000-000000000000';
/** The documented lifetime: exp = nbf + 10 minutes. */
const proofLifetimeSeconds = 600;

/**
 * A proof of possession: RS256, signed with the private key of the PEM (a certificate already on the
 * application), iss = the application's OBJECT id (not its client id), aud fixed, nbf now, exp + 10 min.
 */
export async function signProof(
  pem: string,
  applicationObjectId: string,
  now: Date = new Date(),
): Promise<string> {
  const facts = certificateFacts(pem);
  const nbf = Math.floor(now.getTime() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', x5t: facts.x5t, kid: facts.thumbprint })
    .setAudience(proofAudience)
    .setIssuer(applicationObjectId)
    .setNotBefore(nbf)
    .setExpirationTime(nbf + proofLifetimeSeconds)
    .sign(createPrivateKey(pem));
}

export interface AddedKey {
  keyId: string;
  endDateTime?: string;
}

/** Addressed by appId, which the app knows; the proof carries the object id. */
const applicationPath = (clientId: string): string =>
  `/applications(appId='${clientId.replace(/'/g, "''")}')`;

export class GraphApplicationKeys {
  constructor(
    private readonly client: Client,
    private readonly clientId: string,
  ) {}

  /** Uploads the public part of `newPem`; `proof` is signed by a key already on the application. */
  async addKey(newPem: string, proof: string): Promise<AddedKey> {
    const added = (await this.client.api(`${applicationPath(this.clientId)}/addKey`).post({
      keyCredential: { type: 'AsymmetricX509Cert', usage: 'Verify', key: certificateFacts(newPem).derBase64 },
      passwordCredential: null,
      proof,
    })) as { keyId?: unknown; endDateTime?: unknown };
    if (typeof added?.keyId !== 'string') throw new Error('addKey answered without a keyId');
    return {
      keyId: added.keyId,
      ...(typeof added.endDateTime === 'string' ? { endDateTime: added.endDateTime } : {}),
    };
  }

  /**
   * Removes a key by id; false when the application no longer has it (already removed). Graph's
   * answer for an unknown keyId is undocumented: a 404, or a 400 saying the key does not exist, is
   * assumed (see docs/certificate-rotation.md; unverified against the live service).
   */
  async removeKey(keyId: string, proof: string): Promise<boolean> {
    try {
      await this.client.api(`${applicationPath(this.clientId)}/removeKey`).post({ keyId, proof });
      return true;
    } catch (e) {
      if (noSuchKey(e)) return false;
      throw e;
    }
  }
}

function noSuchKey(e: unknown): boolean {
  const { statusCode, code, message } = e as { statusCode?: number; code?: string; message?: string };
  if (statusCode === 404) return true;
  return (
    statusCode === 400 &&
    (code === 'Request_ResourceNotFound' ||
      /no (such )?key|key\b.*\b(not found|does not exist)/i.test(message ?? ''))
  );
}
