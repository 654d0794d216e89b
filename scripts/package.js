// npm run package: builds the deployable Function App artifact from a clean copy of the sources.
//
// The app is bundled with esbuild (one file for the functions, one for the CLI) against the production
// dependencies installed from the lockfile (`npm ci --omit=dev`) in an empty staging folder outside
// the repository, so a runtime import that is only a devDependency fails the build. The artifact is
// `host.json`, a `package.json` without dependencies, `bin/`, the bundles with their source maps and
// the dashboard's static pages:
// nothing else can reach it. Written twice from one file list: `<out>/app/` (what azure.yaml's
// `dist` points at) and `<out>/m365-contact-sync.zip` (deterministic; its path is the last line printed).
//
// Usage: node scripts/package.js [--out DIR]   (default DIR: .artifact in the repository)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { builtinModules } = require('node:module');
const os = require('node:os');
const path = require('node:path');
const esbuild = require('esbuild');
const { zipSync } = require('fflate');

const root = path.resolve(__dirname, '..');
/** Fails the package above this unpacked size (a smaller package is a faster Flex cold start). */
const budgetBytes = 60 * 1024 * 1024;
/** Provided by the Functions worker at run time, never installed. */
const workerModules = ['@azure/functions-core'];
/** Optional requires inside try/catch that esbuild leaves out: `debug` colours output when it finds it. */
const optionalModules = ['supports-color'];
/** What must never ship, whatever a future change copies in. */
const forbidden = [
  /\.pem$/i,
  /\.pfx$/i,
  /(^|\/)policies\.json$/,
  /(^|\/)local\.settings\.json$/,
  /(^|\/)\.azure\//,
];
/** Zip entries carry this time so the same sources give the same bytes. */
const zipTime = new Date('2026-01-01T00:00:00Z');

function parseArgs(argv) {
  const i = argv.indexOf('--out');
  return { out: path.resolve(i >= 0 && argv[i + 1] ? argv[i + 1] : path.join(root, '.artifact')) };
}

/**
 * How to start npm here. Under `npm run` (and azd's hook runs `npm run package`), npm_execpath names
 * npm's own script, run with this node on every platform; otherwise `npm`, through a shell on Windows,
 * where it is npm.cmd and cannot be spawned without one.
 */
function npmCommand(args, env = process.env, platform = process.platform) {
  const cli = env.npm_execpath;
  if (cli && /npm-cli\.c?js$/.test(cli)) return { cmd: process.execPath, args: [cli, ...args], shell: false };
  return { cmd: 'npm', args, shell: platform === 'win32' };
}

function run({ cmd, args, shell }, cwd) {
  const r = spawnSync(cmd, args, { cwd, shell, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')} could not start: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
}

/** A staging folder with the sources and only the production dependencies, from the lockfile. */
function stage() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'm365-contact-sync-package-'));
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json'])
    fs.copyFileSync(path.join(root, f), path.join(dir, f));
  fs.cpSync(path.join(root, 'src'), path.join(dir, 'src'), { recursive: true });
  run(
    npmCommand(['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline']),
    dir,
  );
  return dir;
}

/** Every file in src/functions is loaded, as the host loads every file the `main` glob matches. */
function functionsEntry(dir) {
  const files = fs
    .readdirSync(path.join(dir, 'src/functions'))
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const entry = path.join(dir, 'functions-entry.ts');
  fs.writeFileSync(entry, files.map((f) => `import './src/functions/${f.slice(0, -3)}';\n`).join(''));
  return entry;
}

async function bundle(dir) {
  const outdir = path.join(dir, 'out');
  const result = await esbuild.build({
    absWorkingDir: dir,
    entryPoints: { 'dist/src/functions/index': functionsEntry(dir), 'dist/src/cli/main': 'src/cli/main.ts' },
    outdir,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    external: workerModules,
    // Readable output (no minifying, names kept) so a stack trace in Azure is usable as it is; the
    // linked maps (paths only, no sources) map it back to src/ in a checkout.
    keepNames: true,
    sourcemap: 'linked',
    sourcesContent: false,
    metafile: true,
    logLevel: 'silent',
  });
  const problems = [...result.errors, ...result.warnings];
  if (problems.length > 0) {
    const text = await esbuild.formatMessages(problems, { kind: 'warning' });
    throw new Error(`esbuild reported problems (treated as errors):\n${text.join('\n')}`);
  }
  const externals = new Set();
  for (const o of Object.values(result.metafile.outputs))
    for (const i of o.imports) if (i.external) externals.add(i.path);
  const unexpected = [...externals].filter(
    (p) =>
      !p.startsWith('node:') &&
      !builtinModules.includes(p) &&
      !workerModules.includes(p) &&
      !optionalModules.includes(p),
  );
  if (unexpected.length > 0)
    throw new Error(`the bundle would need modules it does not carry: ${unexpected.join(', ')}`);
  return { outdir, metafile: result.metafile };
}

/** The artifact's files as { relative path: bytes }. */
function artifactFiles(outdir) {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const manifest = {
    name: pkg.name,
    version: pkg.version,
    description: pkg.description,
    license: pkg.license,
    private: true,
    main: pkg.main,
    engines: pkg.engines,
    bin: pkg.bin,
  };
  const files = {
    'host.json': fs.readFileSync(path.join(root, 'host.json')),
    'package.json': Buffer.from(JSON.stringify(manifest, null, 2) + '\n'),
  };
  for (const rel of Object.values(pkg.bin)) files[rel] = fs.readFileSync(path.join(root, rel));
  // The dashboard's pages, read at run time beside the bundle (src/dashboard/assets.ts looks there).
  const dashboard = path.join(root, 'src/dashboard/static');
  for (const name of fs.readdirSync(dashboard))
    files[`dist/src/dashboard/static/${name}`] = fs.readFileSync(path.join(dashboard, name));
  for (const rel of fs.readdirSync(outdir, { recursive: true })) {
    const full = path.join(outdir, rel);
    if (fs.statSync(full).isFile()) files[rel.split(path.sep).join('/')] = fs.readFileSync(full);
  }
  const bad = Object.keys(files).filter((f) => forbidden.some((re) => re.test(f)));
  if (bad.length > 0) throw new Error(`refusing to package: ${bad.join(', ')}`);
  return Object.fromEntries(Object.entries(files).sort(([a], [b]) => a.localeCompare(b)));
}

function write(files, out) {
  const app = path.join(out, 'app');
  fs.rmSync(app, { recursive: true, force: true });
  for (const [rel, bytes] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(app, rel)), { recursive: true });
    fs.writeFileSync(path.join(app, rel), bytes);
  }
  const zip = path.join(out, 'm365-contact-sync.zip');
  const entries = Object.fromEntries(
    Object.entries(files).map(([rel, bytes]) => [rel, [bytes, { mtime: zipTime }]]),
  );
  fs.writeFileSync(zip, zipSync(entries, { level: 9 }));
  return { app, zip };
}

/** Bytes each dependency puts into the bundles, largest first. */
function dependencySizes(metafile) {
  const sizes = new Map();
  for (const o of Object.values(metafile.outputs))
    for (const [input, { bytesInOutput }] of Object.entries(o.inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      const name = m ? m[1] : '(our code)';
      sizes.set(name, (sizes.get(name) ?? 0) + bytesInOutput);
    }
  return [...sizes].sort((a, b) => b[1] - a[1]);
}

const mb = (n) => `${(n / 1024 / 1024).toFixed(2)} MB`;

async function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const dir = stage();
  try {
    const { outdir, metafile } = await bundle(dir);
    const files = artifactFiles(outdir);
    const size = Object.values(files).reduce((n, b) => n + b.length, 0);
    if (size > budgetBytes)
      throw new Error(`artifact is ${mb(size)} unpacked, over the ${mb(budgetBytes)} budget`);
    fs.mkdirSync(out, { recursive: true });
    const { app, zip } = write(files, out);
    const top = dependencySizes(metafile).filter(([n]) => n !== '(our code)');
    console.log(
      `package: ${Object.keys(files).length} files, ${mb(size)} unpacked, zip ${mb(fs.statSync(zip).size)}`,
    );
    console.log(
      `package: largest dependencies in the bundles: ${top
        .slice(0, 5)
        .map(([n, b]) => `${n} ${mb(b)}`)
        .join(', ')}`,
    );
    console.log(`package: unpacked at ${app} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    console.log(zip);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module)
  main().catch((e) => {
    console.error(`package: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });

module.exports = { npmCommand, run };
