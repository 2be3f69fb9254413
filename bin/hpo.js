#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so a fresh clone needs no build step.
require('tsx/cjs/api').register();
const { main } = require('../src/client/cli.ts');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    const invalidInput = ['ConfigError', 'UsageError'].includes(error && error.name) || /^ERR_PARSE_ARGS_/.test((error && error.code) || '');
    // A failed workflow wraps the reason in causes (workflow, activity, application failure).
    const messages = [];
    for (let cause = error; cause; cause = cause.cause) messages.push(cause.message || String(cause));
    process.stderr.write(`error: ${messages.join(': caused by: ')}\n`);
    process.exit(invalidInput ? 2 : 1);
  },
);
