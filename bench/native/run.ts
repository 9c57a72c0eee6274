/**
 * Run the native copy bench on its own:
 *   node --import tsx bench/native/run.ts
 * Exit 1 if a ratio fell below the floor.
 */
import {nativeCopyBench} from './index.js'

process.exitCode = (await nativeCopyBench()) ? 0 : 1
