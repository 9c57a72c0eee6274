/** The old path of sys/host.ts, kept for src/base-command.ts until it imports ./lib/sys/index.js. */
export * from './sys/host.js'
