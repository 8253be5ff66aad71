/**
 * An event answered 200 survives a crash with the file state, as it does with Deno KV: the
 * daemon acknowledges 10 permanent deletes and 10 email changes, is killed before it acts on
 * them (Ometria holds its first push), and the next start acts on every one of them.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { subscriberHash } from "../../lib/mailchimp/member.ts";
import { runCli, spawnCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { until } from "../_helpers/until.ts";

const LIST = "list000dur";
const SECRET = "durable-secret-0123456789";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test({
  name: "events acknowledged with 200 are acted on after a crash, with a state file",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const world = await startCliWorld({ prefix: "webhook_durability_test_" });
    const port = freePort();
    const env = {
      ...world.env,
      MAILCHIMP_WEBHOOK_SECRET: SECRET,
      WEBHOOK_PORT: String(port),
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    };
    let daemon: Deno.ChildProcess | undefined;
    try {
      world.mailchimp.addList(LIST, {
        members: 60,
        seed: 20,
        lastChangedTo: Date.now() - 3600_000,
      });
      const first = await runCli(["--once", "--state", world.state, LIST], env);
      assert.equal(first.code, 0, first.stderr);

      const members = world.mailchimp.truth(LIST).filter((m) => m.status === "subscribed");
      const deleted = members.slice(0, 10);
      const moved = members.slice(10, 20);
      const held = world.ometria.holdPush();
      daemon = spawnCli(["--state", world.state, LIST], env);
      const url = `http://127.0.0.1:${port}/webhooks/mailchimp/${LIST}/${SECRET}`;
      await until(async () => {
        try {
          const res = await fetch(url);
          await res.body?.cancel();
          return res.status === 200;
        } catch {
          return false;
        }
      }, "the daemon's receiver");

      const post = async (body: Record<string, string>) => {
        const res = await fetch(url, { method: "POST", body: new URLSearchParams(body) });
        await res.body?.cancel();
        assert.equal(res.status, 200, JSON.stringify(body));
      };
      const firedAt = new Date().toISOString().slice(0, 19).replace("T", " ");
      for (const m of deleted) {
        world.mailchimp.deleteMember(LIST, m.email_address);
        await post({
          type: "unsubscribe",
          fired_at: firedAt,
          "data[action]": "delete",
          "data[email]": m.email_address,
          "data[list_id]": LIST,
        });
      }
      for (const [i, m] of moved.entries()) {
        const to = `moved.${i}@example.com`;
        world.mailchimp.changeEmail(LIST, m.email_address, to);
        await post({
          type: "upemail",
          fired_at: firedAt,
          "data[old_email]": m.email_address,
          "data[new_email]": to,
          "data[list_id]": LIST,
        });
      }
      // Killed while its first push is still held: nothing of the 20 is acted on yet.
      await held.arrived;
      daemon.kill("SIGKILL");
      await daemon.status;
      await daemon.stdout.cancel();
      await daemon.stderr.cancel();
      daemon = undefined;
      held.release();

      const restarted = await runCli(["--once", "--state", world.state, LIST], env);
      assert.equal(restarted.code, 0, restarted.stderr);
      const contacts = world.ometria.contacts(collectionFor(LIST));
      for (const m of [...deleted, ...moved]) {
        assert.equal(contacts.get(m.id)?.marketing_optin, "EXPLICITLY_OPTEDOUT", m.id);
      }
      for (const i of moved.keys()) {
        const id = subscriberHash(`moved.${i}@example.com`);
        assert.equal(contacts.get(id)?.email, `moved.${i}@example.com`);
      }
    } finally {
      if (daemon) {
        daemon.kill("SIGKILL");
        await daemon.status;
        await daemon.stdout.cancel().catch(() => {});
        await daemon.stderr.cancel().catch(() => {});
      }
      await world.close();
    }
  },
});
