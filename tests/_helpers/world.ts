/**
 * A test world: both simulators on 127.0.0.1 sharing one fake clock with the sync, a
 * state store, and helpers to build the real service and check the copy.
 */
import assert from "node:assert/strict";
import { FakeClock } from "./fake_clock.ts";
import type { ConnectionConfig } from "../../lib/config/config.ts";
import { SyncService, type SyncServiceOptions } from "../../lib/app/sync_service.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { MailchimpSimulator, type MailchimpSimulatorOptions } from "../../lib/sim/mailchimp_sim.ts";
import { OmetriaSimulator, type OmetriaSimulatorOptions } from "../../lib/sim/ometria_sim.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import type { StateStore } from "../../lib/state/store.ts";

/** Start of every test world's clock. */
export const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

/** Everything a sync test needs. */
export interface World {
  clock: FakeClock;
  mailchimp: MailchimpSimulator;
  ometria: OmetriaSimulator;
  store: StateStore;
  connection(listId: string, overrides?: Partial<ConnectionConfig>): ConnectionConfig;
  /**
   * The real service over this world's store and clock; a list id stands for
   * `connection(listId)`, a connection for itself (one with overrides, say).
   */
  service(
    connections: readonly (string | ConnectionConfig)[],
    options?: Partial<SyncServiceOptions>,
  ): SyncService;
  close(): Promise<void>;
}

/** Options of {@linkcode startWorld}. */
export interface WorldOptions {
  mailchimp?: Omit<MailchimpSimulatorOptions, "clock">;
  ometria?: Omit<OmetriaSimulatorOptions, "clock">;
  store?: StateStore;
}

/**
 * Starts both simulators on a fake clock that moves whenever anybody sleeps (backoff, rate
 * limits), so retries and waits cost no real time.
 */
export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const mailchimp = await MailchimpSimulator.start({ clock, ...options.mailchimp });
  const ometria = await OmetriaSimulator.start({
    clock,
    maxRequestsPerSecond: 0,
    ...options.ometria,
  });
  const store = options.store ?? new MemoryStore();
  const world: World = {
    clock,
    mailchimp,
    ometria,
    store,
    connection: (listId, overrides = {}) => ({
      id: listId,
      listId,
      mailchimp: { apiKey: mailchimp.apiKey, baseUrl: mailchimp.url },
      ometria: { apiKey: ometria.apiKey, baseUrl: ometria.url, endpoint: "push" },
      thresholdSeconds: 7200,
      ...overrides,
    }),
    service: (connections, serviceOptions = {}) =>
      new SyncService({
        connections: connections.map((c) => typeof c === "string" ? world.connection(c) : c),
        store,
        clock,
        logger: quietLogger(),
        marginSeconds: 2,
        ...serviceOptions,
      }),
    close: async () => {
      await mailchimp.close();
      await ometria.close();
      await store.close();
    },
  };
  return world;
}

/** Asserts Ometria holds every member of the list with its latest name, email and status. */
export function assertInSync(world: World, listId: string): void {
  const c = _compare(world, listId);
  assert.deepEqual(
    { missing: c.missing.length, stale: c.stale.length, extra: c.extra.length },
    { missing: 0, stale: 0, extra: 0 },
    `copy of ${listId} differs: missing ${c.missing.slice(0, 5)}, stale ${c.stale.slice(0, 5)}`,
  );
}

/**
 * Asserts the copy is exact where it can be: no member missing or stale, and every contact
 * of a member gone from Mailchimp opted out (members Mailchimp serves malformed excepted:
 * they are quarantined and shown, never copied).
 */
export function assertExactCopy(world: World, listId: string): void {
  const c = _compare(world, listId);
  assert.deepEqual(
    {
      missing: c.missing.length,
      stale: c.stale.length,
      orphansStillOptedIn: c.extraNotOptedOut.length,
    },
    { missing: 0, stale: 0, orphansStillOptedIn: 0 },
    `copy of ${listId} differs: missing ${c.missing.slice(0, 5)}, stale ${
      c.stale.slice(0, 5)
    }, orphans opted in ${c.extraNotOptedOut.slice(0, 5)}`,
  );
}

/** Mailchimp's list against Ometria's collection for it. */
function _compare(world: World, listId: string): ReturnType<typeof compareCopies> {
  return compareCopies(
    world.mailchimp.truth(listId),
    world.ometria.contacts(collectionFor(listId)),
    listId,
  );
}
