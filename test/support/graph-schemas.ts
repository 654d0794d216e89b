// Microsoft's own OpenAPI descriptions (../shared/graph-openapi), compiled with Ajv, to check the
// simulator's requests and responses. Closed schemas reject properties Graph does not have.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';

export const graphOpenApiDir = resolve(__dirname, '../../../../shared/graph-openapi');

interface NormaliseModule {
  normalise(schema: unknown, options?: { closed?: boolean }): Record<string, unknown>;
  addGraphFormats(ajv: Ajv2020): Ajv2020;
  AJV_OPTIONS: Record<string, unknown>;
}

export class GraphSchemas {
  private readonly ajv: Ajv2020;
  private readonly cache = new Map<string, ValidateFunction>();
  private readonly tools: NormaliseModule;

  constructor(readonly dir = graphOpenApiDir) {
    if (!existsSync(join(dir, 'jsonschema'))) {
      throw new Error(
        `Microsoft's Graph OpenAPI extracts are missing: expected ${dir} (the repository's ../shared/graph-openapi).`,
      );
    }
    // The normaliser ships as an ES module outside the project; Node 22 can require() it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    this.tools = require(join(dir, 'tools/normalise.mjs')) as NormaliseModule;
    this.ajv = new Ajv2020(this.tools.AJV_OPTIONS);
    addFormats(this.ajv);
    this.tools.addGraphFormats(this.ajv);
  }

  /** A validator for `jsonschema/<name>.json` (already normalised), closed or open. */
  validator(name: string, closed = true): ValidateFunction {
    const key = `${name}|${closed}`;
    let v = this.cache.get(key);
    if (!v) {
      const file = name.startsWith('local/')
        ? join(this.dir, `${name}.json`)
        : join(this.dir, 'jsonschema', `${name}.json`);
      const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const schema = name.startsWith('local/') ? raw : this.tools.normalise(raw, { closed });
      delete schema.$id;
      v = this.ajv.compile(schema);
      this.cache.set(key, v);
    }
    return v;
  }

  /**
   * A validator for a component of an OpenAPI document (`directory.openapi.json` unless `file` names
   * another, e.g. the simulator's extract of Applications.yml) that has no `jsonschema/` file (e.g.
   * microsoft.graph.appRoleAssignment), built and normalised the way those files are.
   */
  component(name: string, closed = true, file = join(this.dir, 'directory.openapi.json')): ValidateFunction {
    const key = `component:${file}:${name}|${closed}`;
    let v = this.cache.get(key);
    if (!v) {
      const doc = readFileSync(file, 'utf8').replaceAll('#/components/schemas/', '#/$defs/');
      const defs = (JSON.parse(doc) as { components: { schemas: Record<string, unknown> } }).components
        .schemas;
      if (!defs[name]) throw new Error(`${file} has no component ${name}`);
      v = this.ajv.compile(this.tools.normalise({ $ref: `#/$defs/${name}`, $defs: defs }, { closed }));
      this.cache.set(key, v);
    }
    return v;
  }

  /** Validation errors as readable lines; empty when valid. */
  check(name: string, value: unknown, closed = true): string[] {
    const v = this.validator(name, closed);
    if (v(value)) return [];
    return (v.errors ?? []).map(
      (e) => `${name}: ${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`,
    );
  }

  /** The batch schema has separate request and response definitions. */
  checkBatch(kind: 'request' | 'response', value: unknown): string[] {
    const key = `batch-${kind}`;
    let v = this.cache.get(key);
    if (!v) {
      const raw = JSON.parse(readFileSync(join(this.dir, 'local/batch.schema.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      const defs = (raw.$defs ?? {}) as Record<string, unknown>;
      const defName = Object.keys(defs).find(
        (d) => d.toLowerCase().includes(kind) && !d.toLowerCase().includes('item'),
      );
      if (!defName)
        throw new Error(`batch schema has no ${kind} definition: ${Object.keys(defs).join(', ')}`);
      const { $id: _id, ...rest } = raw;
      v = this.ajv.compile({ ...rest, $ref: `#/$defs/${defName}` });
      this.cache.set(key, v);
    }
    if (v(value)) return [];
    return (v.errors ?? []).map((e) => `batch ${kind}: ${e.instancePath || '/'} ${e.message ?? ''}`);
  }
}
