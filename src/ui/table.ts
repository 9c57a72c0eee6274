import Table from 'cli-table3'

/**
 * A borderless table in the style of lspci/nvidia-smi: compact, aligned,
 * readable in a 100-column terminal and in a log file.
 */
export function table(head: string[], rows: string[][], opts: {align?: Array<'left' | 'right' | 'center'>} = {}): string {
  const t = new Table({
    head,
    style: {head: [], border: [], 'padding-left': 0, 'padding-right': 2},
    ...(opts.align ? {colAligns: opts.align} : {}),
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '',
    },
  })
  t.push(...rows)
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
}
