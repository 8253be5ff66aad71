/**
 * Test helpers of the freshness concern: a LogTape configuration that captures records, and
 * a real webhook receiver on 127.0.0.1.
 *
 * @module
 */
import { configureSync, getLogger, type Logger, type LogRecord, resetSync } from "@logtape/logtape";
import type { ConnectionState } from "../../lib/state/schema.ts";
import { newConnectionState } from "../../lib/state/schema.ts";

/** Captured log records and the logger that writes them. Dispose to reset LogTape. */
export interface CapturedLogs extends Disposable {
  logger: Logger;
  records: LogRecord[];
  /** Records whose `event` property is `event` (alerts and delivery events carry one). */
  events(event: string): LogRecord[];
  /** Every record rendered as text, message and properties, for secret checks. */
  text(): string;
}

/** Configures LogTape to capture every record of the `["test", "freshness"]` category. */
export function captureLogs(): CapturedLogs {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { capture: (record) => records.push(record) },
    loggers: [
      { category: ["test", "freshness"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  return {
    logger: getLogger(["test", "freshness"]),
    records,
    events: (event) => records.filter((r) => r.properties["event"] === event),
    text: () =>
      records.map((r) => `${r.message.map(String).join("")} ${JSON.stringify(r.properties)}`)
        .join("\n"),
    [Symbol.dispose]: () => resetSync(),
  };
}

/** How the receiver answers. */
export type ReceiverMode = "ok" | "error500" | "hang";

/** A webhook receiver: a real Deno.serve on 127.0.0.1 port 0 recording JSON bodies. */
export interface Receiver extends AsyncDisposable {
  url: string;
  port: number;
  /** Bodies of requests received, in order (including those answered with an error). */
  bodies: Record<string, unknown>[];
  mode: ReceiverMode;
  /** Resolves once `count` requests have been received. */
  received(count: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a webhook receiver answering per `mode` (changeable later). */
export function startReceiver(mode: ReceiverMode = "ok"): Receiver {
  const bodies: Record<string, unknown>[] = [];
  const hung: (() => void)[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const receiver: Receiver = {
    url: "",
    port: 0,
    bodies,
    mode,
    received: (count) =>
      bodies.length >= count
        ? Promise.resolve()
        : new Promise((resolve) => waiters.push({ count, resolve })),
    close: async () => {
      for (const release of hung) release();
      await server.shutdown();
    },
    [Symbol.asyncDispose]: () => receiver.close(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    bodies.push(await req.json());
    for (const w of waiters.filter((w) => bodies.length >= w.count)) w.resolve();
    if (receiver.mode === "hang") {
      await new Promise<void>((resolve) => hung.push(resolve));
      return new Response("late", { status: 200 });
    }
    if (receiver.mode === "error500") return new Response("boom", { status: 500 });
    return new Response("ok", { status: 200 });
  });
  receiver.port = server.addr.port;
  receiver.url = `http://127.0.0.1:${server.addr.port}/hooks/SECRET-TOKEN-123?key=SECRET-KEY-456`;
  return receiver;
}

/** A connection state whose `fresh_as_of` is `freshAsOfMs` (and status ok). */
export function stateFreshAt(
  id: string,
  freshAsOfMs: number | null,
  extra: Partial<ConnectionState> = {},
): ConnectionState {
  return {
    ...newConnectionState(id, `list-${id}`),
    status: freshAsOfMs === null ? "never" : "ok",
    fresh_as_of: freshAsOfMs === null ? null : new Date(freshAsOfMs).toISOString(),
    ...extra,
  };
}
