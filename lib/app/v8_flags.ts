/**
 * The V8 flags the sync process should run with. Measured (README, "Measured"): nothing of a
 * sync is kept per member — the run completes with the old generation capped at 24 MB at
 * any list size — yet the process peaked at about 210 MB, because V8 lets a heap that
 * allocates fast grow long before collecting it: pages in flight live through a few
 * scavenges, get promoted, and die in an old generation grown to several times what is
 * live, next to 16 MB semi-spaces. A 2 MB semi-space and a heap growing by 25% per major
 * collection keep the whole process near 110–210 MB (the pages die young instead), and set
 * no hard limit, so a larger live set (reconciling a million ids) is never cut off the way
 * `--max-old-space-size` would. They are not free: since issue 19 cut the work per member, the
 * extra major collections cost about 70% more CPU and a quarter more wall time on 2 lists of
 * 100,000 (README, "Issue 19, where it stands"); `--heap-growing-percent=25` is that cost.
 *
 * This constant is the one source of truth: deno.json's `sync` and `compile` tasks, the
 * Dockerfile and the README cannot import it, so tests/app/v8_flags_test.ts fails when
 * their copies differ from it.
 *
 * @module
 */

/** Value of `--v8-flags=` (or `DENO_V8_FLAGS`) for `deno run`/`deno compile` of the sync. */
export const SYNC_V8_FLAGS = "--max-semi-space-size=2,--heap-growing-percent=25";
