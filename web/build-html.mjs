// Copies the page shell next to the bundle: dist/ is what the binary embeds.
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
copyFileSync('src/index.html', 'dist/index.html');
