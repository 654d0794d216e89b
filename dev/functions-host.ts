// DEV TOOL, not part of the product: the one module the Azure Functions host gives a Node worker,
// `@azure/functions-core`, played by the local runner. Without it `@azure/functions` falls back to
// "test mode" and prints a warning for every `app.*` registration; with it each registration reaches
// this host, which keeps it (name, trigger, bindings) so the runner can check what it drives is
// registered. Import this module before any module under src/functions.
import Module from 'node:module';

export interface Registration {
  name: string;
  trigger: string;
  bindings: Record<string, { type: string; direction: string; queueName?: string; schedule?: string }>;
}

/** What the functions registered, by name. */
export const registrations = new Map<string, Registration>();

interface CoreFunctionMetadata {
  name: string;
  bindings: Registration['bindings'];
}

const disposable = { dispose: (): void => undefined };

const core = {
  version: 'local-runner',
  setProgrammingModel: (): void => undefined,
  getProgrammingModel: (): undefined => undefined,
  registerFunction(metadata: CoreFunctionMetadata): typeof disposable {
    const trigger = Object.values(metadata.bindings).find((b) => /trigger$/i.test(b.type));
    registrations.set(metadata.name, {
      name: metadata.name,
      trigger: trigger?.type ?? 'unknown',
      bindings: metadata.bindings,
    });
    return disposable;
  },
  registerHook: (): typeof disposable => disposable,
};

const coreId = '@azure/functions-core';
const stubPath = `${__filename}#functions-core`;
type Resolve = (request: string, ...rest: unknown[]) => string;
const loader = Module as unknown as { _resolveFilename: Resolve };
const resolve = loader._resolveFilename;
// The worker of the real host makes the same name resolvable; here it resolves to this stub.
loader._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]): string {
  return request === coreId ? stubPath : resolve.call(this, request, ...rest);
};
const cached = new Module(stubPath);
cached.filename = stubPath;
cached.loaded = true;
cached.exports = core;
require.cache[stubPath] = cached;
