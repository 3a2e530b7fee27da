// The in-browser fine-tuning demo. `npx vite build --config demo/vite.config.ts` writes demo/dist;
// `npx vite --config demo/vite.config.ts` serves it for development.
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  // The page imports the package's sources and the example model from the repository root.
  server: { fs: { allow: [fileURLToPath(new URL('..', import.meta.url))] } },
  build: {
    outDir: fileURLToPath(new URL('./dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The pretrained weights (~150 kB) stay a separate file rather than an inlined data URL.
    assetsInlineLimit: 0,
  },
});
