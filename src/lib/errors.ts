/** The old path of sys/errors.ts, kept for src/base-command.ts until it imports ./lib/sys/index.js. */
export * from './sys/errors.js'
