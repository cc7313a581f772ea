# syntax=docker/dockerfile:1
# Baton hub image (S37): multi-stage; the runtime stage runs as the unprivileged `node` user, on a
# read-only root filesystem (`docker run --read-only --tmpfs /tmp`), with all state in the /data
# volume and a HEALTHCHECK that needs no curl. See docs/DEPLOYMENT.md "Container".

# --- build: compile TypeScript and the dashboard --------------------------------------------
FROM node:22-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no `prepare` build before the sources are here, and no native addon build
# (better-sqlite3 is optional: Node 22 has node:sqlite built in).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY bin ./bin
COPY src ./src
COPY web ./web
RUN npm run build

# --- deps: production dependencies only, from the lockfile ----------------------------------
FROM node:22-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npm cache clean --force

# --- runtime ---------------------------------------------------------------------------------
FROM node:22-slim
ENV NODE_ENV=production \
    BATON_DATA=/data \
    BATON_HOST=0.0.0.0 \
    BATON_PORT=7410 \
    BATON_SQLITE_DRIVER=node
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY package.json ./
# The data dir is the only writable place the hub needs; 0700 like `baton init` makes it.
RUN mkdir -p /data && chown node:node /data && chmod 0700 /data
USER node
VOLUME ["/data"]
EXPOSE 7410
# Liveness without curl or wget in the image: Node's own fetch against /healthz on loopback
# (127.0.0.1 is always an allowed Host). With TLS at Baton (BATON_TLS_CERT), override it (DEPLOYMENT.md).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.BATON_PORT||7410)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/baton.js"]
CMD ["serve"]
