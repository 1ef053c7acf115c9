# Build: compile TypeScript once; run: only production dependencies and dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && cp -r src/console/assets dist/console/ && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
# A larger young generation: the emit path makes many short-lived objects.
ENV NODE_OPTIONS=--max-semi-space-size=32
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY drizzle ./drizzle
COPY tenants ./tenants
COPY packages-registry ./packages-registry
RUN ln -s /app/bin/signalbus.js /usr/local/bin/signalbus
USER node
EXPOSE 3000
# A deployed service always names its database; the embedded default is for development.
CMD ["signalbus", "serve"]
