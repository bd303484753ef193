/**
 * The directions between the domains (CONVENTIONS.md, "The shape of the house"): the leaves depend
 * on core/ alone, and the API takes the data plane's status through an interface it declares. Every
 * import counts, `import type` too: a type import is still a dependency on the other domain's words.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = dirname(fileURLToPath(import.meta.url));

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (/\.tsx?$/.test(name)) out.push(p);
  }
  return out;
}

/** The domain (first folder under src/) of a file, or '' for a file directly in src/. */
const domainOf = (file: string): string => {
  const parts = relative(SRC, file).split(sep);
  return parts.length > 1 ? parts[0]! : '';
};

interface Edge {
  file: string;
  spec: string;
  to: string;
}

/** Every relative import of every file in a domain, static or dynamic, with the domain it reaches. */
function importsOf(domain: string): Edge[] {
  const edges: Edge[] = [];
  for (const file of sources(join(SRC, domain))) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName: spec } of info.importedFiles) {
      if (!spec.startsWith('.')) continue;
      edges.push({ file: relative(SRC, file), spec, to: domainOf(resolve(dirname(file), spec)) });
    }
  }
  return edges;
}

/** Imports of core/api-shapes.ts in a domain that bring in values (the schemas), not types only. */
function valueImportsOfShapes(domain: string): string[] {
  const out: string[] = [];
  for (const file of sources(join(SRC, domain))) {
    if (file.endsWith('.test.ts')) continue;
    const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
    for (const st of sf.statements) {
      if (!ts.isImportDeclaration(st) && !ts.isExportDeclaration(st)) continue;
      const spec = st.moduleSpecifier;
      if (spec === undefined || !ts.isStringLiteral(spec) || !spec.text.endsWith('/api-shapes.ts')) continue;
      const typeOnly = ts.isImportDeclaration(st)
        ? st.importClause?.isTypeOnly === true ||
          (st.importClause?.name === undefined &&
            st.importClause?.namedBindings !== undefined &&
            ts.isNamedImports(st.importClause.namedBindings) &&
            st.importClause.namedBindings.elements.every((e) => e.isTypeOnly))
        : st.isTypeOnly;
      if (!typeOnly) out.push(`${relative(SRC, file)} imports values from ${spec.text}`);
    }
  }
  return out;
}

/** The imports of `domain` that reach a domain outside `allowed` (or inside `forbidden`). */
function offending(domain: string, rule: { allowed?: string[]; forbidden?: string[] }): string[] {
  return importsOf(domain)
    .filter((e) => e.to !== domain)
    .filter((e) =>
      rule.allowed !== undefined ? !rule.allowed.includes(e.to) : (rule.forbidden ?? []).includes(e.to),
    )
    .map((e) => `${e.file} imports ${e.spec}`);
}

describe('the directions between domains', () => {
  test('the scan sees imports, type-only and dynamic ones included', () => {
    const lb = importsOf('lb');
    assert.ok(lb.some((e) => e.file === join('lb', 'acl.ts') && e.to === 'core'));
    const api = importsOf('api');
    assert.ok(
      api.some((e) => e.file === join('api', 'context.ts') && e.to === 'lifecycle'),
      'import type',
    );
    const cli = importsOf('cli');
    assert.ok(
      cli.some((e) => e.file === join('cli', 'main.ts') && e.spec.startsWith('./')),
      'import()',
    );
  });

  test('core/ imports nothing outside itself', () => {
    assert.deepEqual(offending('core', { allowed: [] }), []);
  });

  test('lb/ depends on core/ alone: the balancer sits below the control plane', () => {
    assert.deepEqual(offending('lb', { allowed: ['core'] }), []);
  });

  test('ipam/ depends on core/ alone', () => {
    assert.deepEqual(offending('ipam', { allowed: ['core'] }), []);
  });

  test("dns/ reads the lifecycle's vocabulary and nothing else: no store, API, agent or data plane", () => {
    assert.deepEqual(offending('dns', { allowed: ['core', 'lifecycle'] }), []);
  });

  test('dataplane/ sits below the control plane: core/, lb/ and dns/ (its relay) only', () => {
    // The agent hands a driver its desired state as the driver's own types (dataplane/driver.ts).
    assert.deepEqual(offending('dataplane', { allowed: ['core', 'lb', 'dns'] }), []);
  });

  test('api/ imports nothing from agent/: it declares the status interface it needs', () => {
    assert.deepEqual(offending('api', { forbidden: ['agent'] }), []);
  });

  test('the CLI, the dashboard, the balancer, the agent and chaos take the API shapes as types only', () => {
    // The schemas are TypeBox values: loading them costs a client verb a few hundred milliseconds and
    // would grow the dashboard's bundle; only the server needs them.
    for (const domain of ['cli', 'web', 'lb', 'agent', 'chaos'])
      assert.deepEqual(valueImportsOfShapes(domain), []);
    assert.ok(valueImportsOfShapes('api').length > 0, 'the scan sees a value import (api/schemas.ts)');
  });
});
