#!/usr/bin/env node
// The admin CLI (built by `npm run build`).
require('../dist/src/cli/main.js');
