# syntax=docker/dockerfile:1
# Build: docker build -t mailchimp-ometria-sync .
# Run:   docker run -d -v sync-data:/app -e MAILCHIMP_API_KEY -e OMETRIA_API_KEY \
#          mailchimp-ometria-sync <list_id…>
# (README, "Container": the program refuses to start without a volume at /app.)

ARG DENO_VERSION=2.9.6

# --- build: compile main.ts into one self-contained binary ------------------------------
FROM denoland/deno:${DENO_VERSION} AS build
WORKDIR /src
# Dependencies first, in their own layer: editing the sources does not download them again.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY main.ts ./
COPY lib ./lib
# deno compile type-checks main.ts itself; no separate deno check.
# The V8 flags keep the heap near what is live (lib/app/v8_flags.ts): about 200–210 MB (scenario
# 8's lists, or one of 1,000,000, measured with `deno run` and the same flags) instead of
# 280–370 MiB plain (README, "Measured"). --no-prompt: a missing permission fails at once, with
# Deno's message naming it, instead of asking a terminal nobody watches.
RUN deno compile --frozen --no-prompt \
      --v8-flags=--max-semi-space-size=2,--heap-growing-percent=25 \
      --allow-net \
      --allow-env \
      --allow-read \
      --allow-write=/app \
      --output /out/mailchimp-ometria-sync \
      main.ts \
 && mkdir -p /out/app

# --- run: glibc + libgcc only, no shell, no package manager, non-root --------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mailchimp-ometria-sync /usr/local/bin/mailchimp-ometria-sync
COPY --from=build --chown=nonroot:nonroot /out/app /app
# sync_jobs.json (the state), its journal and ledger live in the working directory, /app, as
# with the original tool. There is deliberately no VOLUME: it made Docker create an
# anonymous volume whenever -v was forgotten, which the next container never mounted again,
# so the state was silently lost. Instead the program checks the mount table at start and
# refuses a state folder that is not a mounted volume (or is tmpfs), with exit 2 and the
# docker run option that fixes it; SYNC_REQUIRE_STATE_VOLUME=0 runs with a throwaway state.
# Mount a folder there, not the single file: the state is replaced atomically by a rename,
# which a single-file bind mount does not allow.
WORKDIR /app
ENV SYNC_REQUIRE_STATE_VOLUME=1
# V8 sizes its heap from the memory Deno says the machine has: the host's, unless this is set
# (to anything: Deno only checks that it is), and then the container's limit (cgroups v1 or
# v2). A container given `--memory` then gets a heap sized for it (a 262 MiB heap limit up to
# 512 MiB, half the limit above) instead of one sized for the host, which grew past the limit
# into the kernel's OOM kill (README, "Container": measured with and without). Not a cap: a
# live set over the limit is still killed. Deno's own images set it; distroless must say it.
ENV DENO_USE_CGROUPS=1
# The log goes to standard error only, which `docker logs` keeps (and the log driver
# rotates); a log file in the volume would grow for ever. -e LOG_FILE=log_file.log brings
# the file back.
ENV LOG_FILE=""
USER nonroot
# Exec form: the binary is PID 1 and receives SIGTERM itself; it installs handlers, finishes
# the batches in flight, saves its state and exits within 10 seconds.
STOPSIGNAL SIGTERM
# Liveness: the metrics listener answers /healthz while the process runs. The image sets
# METRICS_PORT, so the check always has a listener to ask; without one, `healthcheck` fails
# rather than pass for a process it cannot see. METRICS_HOST stays on loopback (set
# 0.0.0.0 and publish the port to scrape /metrics from outside). "A list is behind" is not
# "the process is dead": probe freshness with `status --check` (exit 1 when a list is
# behind) from your monitoring instead of restarting the container.
ENV METRICS_PORT=9464 METRICS_HOST=127.0.0.1
HEALTHCHECK --interval=1m --timeout=10s --start-period=1m \
  CMD ["/usr/local/bin/mailchimp-ometria-sync", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mailchimp-ometria-sync"]
