#!/usr/bin/env node
/** The `nestjs-dbpool` executable (package.json `bin`): runs {@link main} with the command line. */
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`nestjs-dbpool: ${(error as Error)?.stack ?? error}\n`);
    process.exitCode = 1;
  },
);
