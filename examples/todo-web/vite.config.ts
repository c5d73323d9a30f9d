import { defineConfig } from 'vite'

export default defineConfig({
  // VITE_ and ELECTRIC_ variables reach the app (ELECTRIC_SERVICE: the sync service's URL)
  envPrefix: ['VITE_', 'ELECTRIC_'],
  // wa-sqlite finds its .wasm next to its module: keep it out of the dependency pre-bundling
  optimizeDeps: { exclude: ['wa-sqlite'] },
  // wa-sqlite's .wasm is 1.1 MB and the client's bundle about 550 kB: no warning for that
  build: { target: 'es2022', chunkSizeWarningLimit: 1500 },
})
