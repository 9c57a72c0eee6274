/** What every --json document shares: one schema version, put first in each document and in the error envelope. */
import type {IopmemError} from './errors.js'

/**
 * The version of every --json document's shape (docs/schemas/): bumped when a
 * field changes meaning or goes, not when one is added.
 */
export const SCHEMA_VERSION = 1

export type Versioned<T> = {schemaVersion: typeof SCHEMA_VERSION} & T

/**
 * A command's result as its --json document: `schemaVersion` first, then the
 * result's fields (a result with toJSON gives its documented shape first).
 * What is not an object (an array, a string) is returned unchanged.
 */
export function versioned(result: unknown): unknown {
  const doc = result !== null && typeof result === 'object' && typeof (result as {toJSON?: unknown}).toJSON === 'function' ? (result as {toJSON(): unknown}).toJSON() : result
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return doc
  return {schemaVersion: SCHEMA_VERSION, ...doc}
}

/** The error envelope under --json: `{schemaVersion, error: {code, message, exit, suggestions, …}}`. */
export function errorEnvelope(e: IopmemError): {schemaVersion: typeof SCHEMA_VERSION; error: Record<string, unknown>} {
  return {schemaVersion: SCHEMA_VERSION, error: e.toJSON()}
}
