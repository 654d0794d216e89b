// DEV TOOL: starts Azurite (the real Azure Storage emulator) in memory on free 127.0.0.1 ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { resolve } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { QueueClient } from '@azure/storage-queue';

const account = 'devstoreaccount1';
// Azurite's well-known development key (public, documented; not a secret).
const key = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** Distinct free ports: all held open at once, so the OS cannot hand out one twice. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolveServer, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolveServer(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        r(true);
      });
      socket.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > until)
      throw new Error(`Azurite did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface AzuriteHandle {
  connectionString: string;
  tableClient(table: string): TableClient;
  queueClient(queue: string): QueueClient;
  close(): Promise<void>;
}

export async function startAzurite(): Promise<AzuriteHandle> {
  const [blobPort, queuePort, tablePort] = (await freePorts(3)) as [number, number, number];
  const bin = resolve(__dirname, '../../node_modules/azurite/dist/src/azurite.js');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      bin,
      '--inMemoryPersistence',
      '--silent',
      '--disableTelemetry',
      '--skipApiVersionCheck',
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(blobPort),
      '--queueHost',
      '127.0.0.1',
      '--queuePort',
      String(queuePort),
      '--tableHost',
      '127.0.0.1',
      '--tablePort',
      String(tablePort),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await Promise.all([tablePort, queuePort, blobPort].map((p) => waitForPort(p, 15_000)));
  } catch (e) {
    child.kill();
    throw new Error(`${(e as Error).message}: ${stderr}`);
  }
  const connectionString = `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${key};BlobEndpoint=http://127.0.0.1:${blobPort}/${account};QueueEndpoint=http://127.0.0.1:${queuePort}/${account};TableEndpoint=http://127.0.0.1:${tablePort}/${account};`;
  return {
    connectionString,
    tableClient: (table) =>
      TableClient.fromConnectionString(connectionString, table, { allowInsecureConnection: true }),
    queueClient: (queue) => new QueueClient(connectionString, queue),
    close: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}
