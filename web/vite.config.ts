// Builds the single-page app into web/dist, which the gateway serves at "/".
// Everything is bundled: no CDN at run time.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    // `npm run dev` proxies the API to a gateway on the default port.
    proxy: {
      "/v1": "http://127.0.0.1:8080",
      "/analyze": "http://127.0.0.1:8080",
      "/healthz": "http://127.0.0.1:8080",
    },
  },
});
