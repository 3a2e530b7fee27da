// The kit's `vectors` command: src/cli.ts as published, with Dawn registered first.
import './dawn.js';
import '../../../src/cli.js';
