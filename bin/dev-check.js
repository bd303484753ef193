// In a checkout (src/ beside dist/), whether dist/lib is older than the sources it is built from.
// An installed package has no src/ and skips this. Kept apart from vipdip.js so the test runner's
// build step asks the same question.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Newest modification time (ms) of the non-test TypeScript sources under `dir`. */
function newestSource(dir) {
  let newest = { mtime: 0, path: '' };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      const n = newestSource(p);
      if (n.mtime > newest.mtime) newest = n;
    } else if (/\.tsx?$/.test(e.name) && !e.name.endsWith('.test.ts')) {
      const mtime = statSync(p).mtimeMs;
      if (mtime > newest.mtime) newest = { mtime, path: p };
    }
  }
  return newest;
}

/**
 * Why dist/lib of the package at `root` cannot be trusted: 'missing', the path of a source newer
 * than the build, or undefined when it is up to date (or there are no sources to compare with).
 */
export function staleBuild(root) {
  let src;
  try {
    src = newestSource(join(root, 'src'));
  } catch {
    return undefined;
  }
  let built;
  try {
    built = statSync(join(root, 'dist/lib/built')).mtimeMs;
  } catch {
    return 'missing';
  }
  return src.mtime > built ? src.path : undefined;
}
