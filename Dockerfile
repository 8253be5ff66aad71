# syntax=docker/dockerfile:1
# Build: docker build -t mailchimp-ometria-sync .
# Run:   docker run --rm -v sync-data:/app -e MAILCHIMP_API_KEY -e OMETRIA_API_KEY \
#          mailchimp-ometria-sync <list_id…>

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
# The V8 flags keep the heap near what is live (lib/app/v8_flags.ts): about 110 MB for a
# list of any size instead of 200+.
RUN deno compile --frozen \
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
# sync_jobs.json (the state) and log_file.log live in the working directory, /app, as with
# the original tool; mount a folder there (not the single file: the state is replaced
# atomically by a rename, which a single-file bind mount does not allow).
WORKDIR /app
VOLUME ["/app"]
USER nonroot
# Exec form: the binary is PID 1 and receives SIGTERM itself; it installs handlers, finishes
# the batches in flight, saves its state and exits within 10 seconds.
STOPSIGNAL SIGTERM
# Liveness: the metrics listener answers /healthz while the process runs. Set METRICS_PORT
# (and METRICS_HOST=0.0.0.0 to scrape from outside); without it the check always passes.
# "A list is behind" is not "the process is dead": probe freshness with `status --check`
# (exit 1 when a list is behind) from your monitoring instead of restarting the container.
ENV METRICS_HOST=127.0.0.1
HEALTHCHECK --interval=1m --timeout=10s --start-period=1m \
  CMD ["/usr/local/bin/mailchimp-ometria-sync", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mailchimp-ometria-sync"]
