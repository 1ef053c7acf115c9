/**
 * A test fixture script bundled into one ES module, for child processes a
 * test starts by the dozen: loading a bundle takes a fraction of what tsx's
 * per-file resolving and loading of the sources costs, and on two cores that
 * CPU is what a crash test's replacements wait for. Packages stay external,
 * loaded from node_modules as usual; each source file keeps its own
 * `import.meta.url`, so paths to migrations, the registry and assets resolve
 * as they do from the sources.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
// Inside the project, so the bundle's bare imports resolve to its node_modules.
const outDir = path.join(projectRoot, 'node_modules', '.cache', 'signalbus-test');
const built = new Map<string, Promise<string>>();

const ownImportMetaUrl: Plugin = {
  name: 'own-import-meta-url',
  setup(plugin) {
    plugin.onLoad({ filter: /\.tsx?$/ }, async (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const source = await readFile(args.path, 'utf8');
      const contents = source.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href));
      return { contents, loader: args.path.endsWith('x') ? 'tsx' : 'ts' };
    });
  },
};

/** The path of `entry` bundled; built once per test process, named by its content so concurrent builds agree. */
export function bundledScript(entry: string): Promise<string> {
  let bundle = built.get(entry);
  if (!bundle) {
    bundle = (async () => {
      const result = await build({
        entryPoints: [entry],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        write: false,
        logLevel: 'silent',
        plugins: [ownImportMetaUrl],
      });
      const code = result.outputFiles[0]!.contents;
      const name = `${path.basename(entry).replace(/\.tsx?$/, '')}-${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`;
      const file = path.join(outDir, name);
      await mkdir(outDir, { recursive: true });
      const partial = `${file}.${process.pid}`;
      await writeFile(partial, code);
      await rename(partial, file);
      return file;
    })();
    built.set(entry, bundle);
  }
  return bundle;
}
