// DEV TOOL: starts Azurite (the real Azure Storage emulator) in memory on 127.0.0.1 ports the OS picks.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { QueueClient } from '@azure/storage-queue';

const account = 'devstoreaccount1';
// Azurite's well-known development key (public, documented; not a secret).
const key = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteHandle {
  connectionString: string;
  tableClient(table: string): TableClient;
  queueClient(queue: string): QueueClient;
  close(): Promise<void>;
}

// Generous: on a loaded 2-core machine (parallel suites, parallel builds) Azurite takes far over 30 s to load.
const startTimeoutMs = 120_000;

/** The port in Azurite's "<service> service is successfully listening at http://host:port" line. */
function listeningPort(output: string, service: 'Blob' | 'Queue' | 'Table'): number | undefined {
  const m = new RegExp(`Azurite ${service} service is successfully listening at https?://[^:]+:(\\d+)`).exec(
    output,
  );
  return m ? Number(m[1]) : undefined;
}

/**
 * Azurite binds port 0 (the OS picks a free port, so parallel suites cannot clash) and prints
 * where each service listens; we wait for all three lines.
 */
async function spawnAzurite(
  extraArgs: string[] = [],
): Promise<{ child: ChildProcess; blob: number; queue: number; table: number }> {
  const bin = resolve(__dirname, '../../node_modules/azurite/dist/src/azurite.js');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      bin,
      '--inMemoryPersistence',
      '--silent',
      '--disableTelemetry',
      '--skipApiVersionCheck',
      ...['--blobHost', '127.0.0.1', '--blobPort', '0'],
      ...['--queueHost', '127.0.0.1', '--queuePort', '0'],
      ...['--tableHost', '127.0.0.1', '--tablePort', '0'],
      ...extraArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    return await new Promise((resolvePorts, reject) => {
      const fail = (e: Error): void => {
        clearTimeout(timer);
        reject(e);
      };
      const timer = setTimeout(
        () => fail(new Error(`Azurite did not start within ${startTimeoutMs} ms: ${stderr || stdout}`)),
        startTimeoutMs,
      );
      child.once('error', fail);
      child.once('exit', (code) =>
        fail(new Error(`Azurite exited (code ${code}) before listening: ${stderr}`)),
      );
      child.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString();
        const [blob, queue, table] = (['Blob', 'Queue', 'Table'] as const).map((s) =>
          listeningPort(stdout, s),
        );
        if (blob && queue && table) {
          clearTimeout(timer);
          // Nothing more is read; keep the pipe drained so Azurite never blocks on a full buffer.
          child.stdout?.removeAllListeners('data').resume();
          resolvePorts({ child, blob, queue, table });
        }
      });
    });
  } catch (e) {
    child.kill();
    throw e;
  }
}

export async function startAzurite(): Promise<AzuriteHandle> {
  const { child, blob, queue, table } = await spawnAzurite();
  const connectionString = `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${key};BlobEndpoint=http://127.0.0.1:${blob}/${account};QueueEndpoint=http://127.0.0.1:${queue}/${account};TableEndpoint=http://127.0.0.1:${table}/${account};`;
  return {
    connectionString,
    tableClient: (name) =>
      TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: true }),
    queueClient: (name) => new QueueClient(connectionString, name),
    close: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

export interface HttpsBlobHandle {
  /** https://127.0.0.1:<port>/devstoreaccount1 */
  accountUrl: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Azurite over HTTPS with OAuth (`--oauth basic`), for its blob service: it takes bearer tokens only
 * over HTTPS, and checks their issuer, audience and lifetime but neither their signature nor Azure
 * RBAC (Azurite's BlobTokenAuthenticator). `cert`/`key` are PEM files; the caller trusts their CA.
 */
export async function startAzuriteBlobHttps(tls: { cert: string; key: string }): Promise<HttpsBlobHandle> {
  const { child, blob } = await spawnAzurite(['--cert', tls.cert, '--key', tls.key, '--oauth', 'basic']);
  return {
    accountUrl: `https://127.0.0.1:${blob}/${account}`,
    port: blob,
    close: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}
