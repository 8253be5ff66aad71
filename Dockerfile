# syntax=docker/dockerfile:1
# Build: docker build -t mailchimp-ometria-sync .
# Run:   docker run --rm -v sync-data:/app -e MAILCHIMP_API_KEY -e OMETRIA_API_KEY \
#          mailchimp-ometria-sync <list_id…>

ARG DENO_VERSION=2.9.6

# --- build: compile main.ts into one self-contained binary ------------------------------
FROM denoland/deno:${DENO_VERSION} AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib ./lib
RUN deno install --frozen \
 && deno check main.ts \
 && deno compile --frozen \
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
# Unhealthy when any list is behind its threshold (status reads the state without its lock).
HEALTHCHECK --interval=5m --timeout=30s --start-period=10m \
  CMD ["/usr/local/bin/mailchimp-ometria-sync", "status", "--check"]
ENTRYPOINT ["/usr/local/bin/mailchimp-ometria-sync"]
