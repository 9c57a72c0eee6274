import {expect} from 'chai'

import {examples, pick} from '../../src/base-command.js'

describe('command helpers', () => {
  it('examples(): one a line, arguments then # and the description, sudo kept in front', () => {
    expect(
      examples(`
                 # Every function
        --all    # Bridges too
        sudo -j  # As root
      `),
    ).to.deep.equal([
      {command: '<%= config.bin %> <%= command.id %>', description: 'Every function'},
      {command: '<%= config.bin %> <%= command.id %> --all', description: 'Bridges too'},
      {command: 'sudo <%= config.bin %> <%= command.id %> -j', description: 'As root'},
    ])
  })

  it('examples(): a line without a description is an error, not a silent example', () => {
    expect(() => examples('--all')).to.throw(/without a description/)
  })

  it('pick(): only the named fields', () => {
    expect(pick({a: 1, b: undefined, c: 3}, ['a', 'b'])).to.deep.equal({a: 1, b: undefined})
  })
})
