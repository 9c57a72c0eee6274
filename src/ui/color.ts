import {Chalk, type ChalkInstance} from 'chalk'
import {supportsColor} from 'chalk'

/**
 * Colours for a stream: off under NO_COLOR (any non-empty value, per
 * no-color.org) and when the stream is not a TTY, unless FORCE_COLOR says
 * otherwise.
 */
export function colorsFor(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): ChalkInstance {
  const forced = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false'
  if (!forced && ((env.NO_COLOR !== undefined && env.NO_COLOR !== '') || !stream.isTTY)) return new Chalk({level: 0})
  return new Chalk({level: supportsColor ? supportsColor.level : forced ? 1 : 0})
}
