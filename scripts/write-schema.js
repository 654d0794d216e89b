// Writes schema/policy-file.schema.json from the zod schemas (npm run schema).
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { policyFileJsonSchema } = require('../dist/src/sync/config/schema.js');
writeFileSync(
  join(__dirname, '../schema/policy-file.schema.json'),
  JSON.stringify(policyFileJsonSchema(), null, 2) + '\n',
);
