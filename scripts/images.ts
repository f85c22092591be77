/**
 * `npm run images`: builds the node and operator images from their Dockerfiles with BuildKit
 * (plus the local base and pause images; see test/k8s/node/images.ts) and prints each image's
 * reference, digest and size; `--json` prints the same as one JSON object.
 */
import { buildImages } from '../test/k8s/node/images.js';

const json = process.argv.includes('--json');
const unknown = process.argv.slice(2).filter((a) => a !== '--json');
if (unknown.length > 0) {
  console.error(`usage: npm run images [-- --json]   (unknown: ${unknown.join(' ')})`);
  process.exit(2);
}
try {
  const set = await buildImages();
  if (json) console.log(JSON.stringify(set));
  else {
    for (const image of Object.values(set)) {
      console.log(`${image.ref.padEnd(40)} digest ${image.digest}  id ${image.imageId}  ${(image.sizeBytes / 1048576).toFixed(1)} MiB`);
    }
  }
} catch (e) {
  console.error(`npm run images: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
