# captcha-callback-monitor: the receiver (and the `demo` traffic generator) as a non-root Node 24 image.
#   docker build -t captcha-callback-monitor .
#   docker run -p 3000:3000 -p 127.0.0.1:9464:9464 -e MANAGEMENT_HOST=0.0.0.0 -v ccm-data:/app/data captcha-callback-monitor
# The management listener (/metrics, /tasks) binds the container's loopback unless MANAGEMENT_HOST says otherwise, so
# publishing 9464 needs MANAGEMENT_HOST=0.0.0.0 (add API_TOKEN, or the receiver warns that /tasks is open); the image
# does not set it, so a plain run exposes nothing but the callback port.

# Build stage: compile TypeScript to dist/ with the dev dependencies.
FROM node:24.21.0-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/koa/package.json ./packages/koa/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY packages/koa/tsconfig.build.json ./packages/koa/
COPY packages/koa/src ./packages/koa/src
COPY src ./src
RUN npm run build

# Runtime stage: production dependencies and the compiled code only.
FROM node:24.21.0-slim
ENV NODE_ENV=production \
    PORT=3000 \
    MANAGEMENT_PORT=9464 \
    STORE_URL=sqlite:/app/data/callbacks.db
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/koa/package.json ./packages/koa/
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/packages/koa/dist ./packages/koa/dist
COPY --from=build /app/dist ./dist
# The SQLite store lives on a volume owned by the unprivileged `node` user of the base image.
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME ["/app/data"]
USER node
EXPOSE 3000 9464
# No curl in the slim image: Node itself asks /healthz (200 while the store is reachable, else 503).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/server/cli.js"]
CMD ["serve"]
