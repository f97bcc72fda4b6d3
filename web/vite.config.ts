import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// The bundle is committed (web/dist) and embedded in the tollgate binary, so `cargo run` serves
// it without Node; CI rebuilds it and fails when the committed one differs.
export default defineConfig({
  plugins: [preact()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/api": "http://127.0.0.1:8080", "/admin": "http://127.0.0.1:8080", "/v1": "http://127.0.0.1:8080" } },
});
