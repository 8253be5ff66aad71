import { runBench } from "../lib/app/bench.ts";
import { quietLogger } from "../lib/log/logging.ts";
const flags = Deno.args[0]!;
const baseEnv: Record<string, string> = {};
for (const n of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"]) {
  const v = Deno.env.get(n);
  if (v) baseEnv[n] = v;
}
await runBench({
  logger: quietLogger(),
  write: (t) => console.log(t),
  baseEnv,
  scenarios: [1],
  v8Flags: flags,
  command: {
    executable: Deno.execPath(),
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      new URL("../main.ts", import.meta.url).pathname,
    ],
  },
});
