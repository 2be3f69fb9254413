#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so a fresh clone needs no build step.
require('tsx/cjs/api').register();
const { main } = require('../src/client/cli.ts');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    const invalidInput = ['ConfigError', 'UsageError'].includes(error && error.name) || /^ERR_PARSE_ARGS_/.test((error && error.code) || '');
    process.stderr.write(`error: ${error && error.message ? error.message : String(error)}\n`);
    process.exit(invalidInput ? 2 : 1);
  },
);
