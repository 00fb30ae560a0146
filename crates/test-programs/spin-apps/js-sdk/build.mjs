// `npm run build`: turns src/index.js into dist/js-sdk.wasm with the Spin JS
// SDK's `j2w`. The script has no imports, so there is nothing to bundle.
//
// j2w writes scratch files (precompiled-source.js, <input>.buildData.json)
// beside its input, so it is handed a copy in build/ to keep src/ clean. It
// neither creates the output's folder nor exits non-zero when it fails (it
// only prints the error), hence the mkdir, and the old output removed first so
// that the check at the end sees only what this build wrote.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';

const output = 'dist/js-sdk.wasm';
mkdirSync('build', { recursive: true });
mkdirSync('dist', { recursive: true });
rmSync(output, { force: true });
copyFileSync('src/index.js', 'build/index.js');
execFileSync('j2w', ['-i', 'build/index.js', '-o', output], { stdio: 'inherit' });
if (!existsSync(output)) {
  console.error(`j2w did not write ${output}`);
  process.exit(1);
}
