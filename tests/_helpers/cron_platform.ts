/**
 * The cron side of Deno Deploy, played over the socket the Deno runtime itself talks to when
 * `DENO_UNSTABLE_CRON_SOCK` is set (`tcp:<host>:<port>`): newline-separated JSON, as in
 * denoland/deno `ext/cron/socket.rs`. The runtime sends `{"kind":"register","crons":[…]}`
 * for every `Deno.cron`, `{"kind":"result",…}` after each run and `{"kind":"reject-ack"}`;
 * the platform sends `{"kind":"invoke","name":…}` to run a cron, and
 * `{"kind":"reject-new-crons","reason":…}` once it has read a revision's crons, after which
 * `Deno.cron` throws. So a test runs a cron the way Deploy does, and a cron registered late
 * fails as it would there.
 *
 * @module
 */

/** One cron as the runtime registered it. */
export interface RegisteredCron {
  name: string;
  schedule: string;
}

/** The platform's end of the cron socket of one Deno process. */
export class CronPlatform {
  #listener: Deno.TcpListener;
  #conn: Promise<Deno.TcpConn>;
  #reading: Promise<void>;
  #messages: Record<string, unknown>[] = [];

  private constructor(listener: Deno.TcpListener) {
    this.#listener = listener;
    this.#conn = listener.accept();
    this.#reading = this.#conn.then(async (conn) => {
      let buffered = "";
      try {
        for await (const text of conn.readable.pipeThrough(new TextDecoderStream())) {
          buffered += text;
          const lines = buffered.split("\n");
          buffered = lines.pop()!;
          for (const line of lines) if (line.trim()) this.#messages.push(JSON.parse(line));
        }
      } catch { /* the process went away */ }
    }, () => {});
  }

  /** Listens on 127.0.0.1 (a free port); give {@linkcode env} to the process. */
  static start(): CronPlatform {
    return new CronPlatform(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  }

  /** The variable that makes the Deno runtime use this socket for its crons. */
  get env(): { DENO_UNSTABLE_CRON_SOCK: string } {
    return { DENO_UNSTABLE_CRON_SOCK: `tcp:127.0.0.1:${this.#listener.addr.port}` };
  }

  /** Every cron the process registered so far. */
  get registered(): RegisteredCron[] {
    return this.#messages.filter((m) => m.kind === "register")
      .flatMap((m) => m.crons as RegisteredCron[]);
  }

  /** The results the process reported for `name`'s runs, oldest first. */
  results(name: string): boolean[] {
    return this.#messages.filter((m) => m.kind === "result" && m.name === name)
      .map((m) => m.success as boolean);
  }

  /** Runs cron `name` in the process, as the schedule would. */
  async invoke(name: string): Promise<void> {
    await this.#send({ kind: "invoke", name, traceparent: null });
  }

  /** Tells the process that the revision's crons are read: a later `Deno.cron` throws. */
  async rejectNewCrons(reason: string): Promise<void> {
    await this.#send({ kind: "reject-new-crons", reason });
  }

  /** Closes the socket (the process sees the connection end) and the listener. */
  async close(): Promise<void> {
    this.#listener.close();
    const conn = await Promise.race([this.#conn, Promise.resolve(undefined)]);
    try {
      conn?.close();
    } catch { /* already closed by the other end */ }
    await this.#reading;
  }

  async #send(message: Record<string, unknown>): Promise<void> {
    const conn = await this.#conn;
    await conn.write(new TextEncoder().encode(`${JSON.stringify(message)}\n`));
  }
}
