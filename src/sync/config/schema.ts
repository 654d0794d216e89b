// The policy file: connections (one per tenant) and policies, validated with zod. The same schemas
// emit the JSON Schema editors use (npm run schema).
import { z } from 'zod';
import { CronExpressionParser } from 'cron-parser';

export const contactFieldNames = [
  'displayName',
  'givenName',
  'surname',
  'emailAddresses',
  'businessPhones',
  'mobilePhone',
  'jobTitle',
  'department',
  'companyName',
  'officeLocation',
  'businessAddress',
  'manager',
  'categories',
] as const;
export type ContactFieldName = (typeof contactFieldNames)[number];

/** Fields that hold one string, so a policy may set a constant for them. */
export const stringFieldNames = [
  'displayName',
  'givenName',
  'surname',
  'mobilePhone',
  'jobTitle',
  'department',
  'companyName',
  'officeLocation',
  'manager',
] as const;

export const filterableAttributes = [
  'department',
  'companyName',
  'country',
  'city',
  'officeLocation',
  'jobTitle',
  'usageLocation',
  ...Array.from({ length: 15 }, (_, i) => `extensionAttribute${i + 1}` as const),
] as const;

const guid = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a GUID');
const httpsUrl = z.url({ protocol: /^https$/, error: 'must be an https URL' });
const id = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/,
    'letters, digits, - and _ (at most 63), starting with a letter or digit',
  );
const upn = z
  .string()
  .regex(/^[^@\s]+@[^@\s]+$/, 'must be a user principal name (name@domain)')
  // Entra never allows them in a UPN, and PowerShell reads them as quote marks (the `scope` script).
  .regex(/^[^\u2018-\u201B]*$/, 'must not contain typographic single quotes (U+2018 to U+201B)');

export const certificateSource = z.union([
  z.strictObject({
    keyVaultUrl: httpsUrl.describe('The vault, e.g. https://contoso-sync.vault.azure.net'),
    name: z
      .string()
      .regex(/^[0-9a-zA-Z-]{1,127}$/, 'Key Vault names use letters, digits and -')
      .describe('Certificate name (content type PEM)'),
    keyId: guid
      .optional()
      .describe(
        'Certificate ID the app registration lists for the uploaded certificate; lets rotation remove that first key',
      ),
  }),
  z.strictObject({
    pemFile: z.string().min(1).describe('Workstation use: a PEM file with the private key and certificate'),
  }),
]);

export const connectionSchema = z
  .strictObject({
    id,
    tenantId: guid,
    clientId: guid.describe('Application (client) id of the app registration'),
    certificate: certificateSource,
    applicationObjectId: guid
      .optional()
      .describe(
        "Object ID of the app registration: turns on certificate rotation (it is the issuer of addKey's proof)",
      ),
    cloud: z.enum(['global', 'usgov', 'usgovdod', 'china']).default('global'),
    authorityHost: httpsUrl.optional().describe('Overrides the cloud: Entra ID authority host'),
    graphEndpoint: httpsUrl.optional().describe('Overrides the cloud: Microsoft Graph root, without /v1.0'),
    exchangeAdmin: z
      .boolean()
      .default(false)
      .describe(
        "Read hidden-from-address-list flags and mail contacts' and groups' NoContactSync marks from Exchange Online (Get-Recipient); needs Exchange.ManageAsApp and the View-Only Recipients role. Off: Graph cannot tell hidden users apart",
      ),
    exchangeEndpoint: httpsUrl
      .optional()
      .describe("Overrides the cloud's Exchange Online root (https://outlook.office365.com)"),
  })
  .refine((c) => (c.authorityHost === undefined) === (c.graphEndpoint === undefined), {
    message: 'authorityHost and graphEndpoint go together',
    path: ['graphEndpoint'],
  })
  .refine((c) => c.applicationObjectId === undefined || 'keyVaultUrl' in c.certificate, {
    message: 'certificate rotation needs the certificate in Key Vault (keyVaultUrl and name), not a PEM file',
    path: ['applicationObjectId'],
  })
  .refine((c) => c.applicationObjectId?.toLowerCase() !== c.clientId.toLowerCase(), {
    message:
      "this is the client id (Application ID); copy the Object ID from the app registration's Overview instead",
    path: ['applicationObjectId'],
  });
export type Connection = z.output<typeof connectionSchema>;

const attributeFilter = z.discriminatedUnion('op', [
  z.strictObject({ attribute: z.enum(filterableAttributes), op: z.literal('equals'), value: z.string() }),
  z.strictObject({
    attribute: z.enum(filterableAttributes),
    op: z.literal('in'),
    values: z.array(z.string()).min(1),
  }),
  z.strictObject({
    attribute: z.enum(filterableAttributes),
    op: z.literal('startsWith'),
    value: z.string().min(1),
  }),
]);
export type AttributeFilter = z.output<typeof attributeFilter>;

export const directorySource = z.strictObject({
  type: z.literal('directory'),
  includeUsers: z.boolean().default(true),
  includeOrgContacts: z.boolean().default(false).describe('Mail contacts from the GAL'),
  includeGroups: z
    .array(guid)
    .default([])
    .describe('Only members of these groups (nested membership counts)'),
  excludeGroups: z.array(guid).default([]),
  filters: z.array(attributeFilter).default([]).describe('All must match (AND)'),
  includeDisabled: z.boolean().default(false),
  includeHidden: z.boolean().default(false).describe('Objects hidden from address lists'),
  includeDistributionLists: z
    .boolean()
    .default(false)
    .describe('Mail-enabled groups (distribution lists, Microsoft 365 groups) as contacts'),
  sharedMailboxes: z
    .boolean()
    .optional()
    .describe(
      'Shared mailboxes in (true) or out (false), whatever their sign-in state; needs MailboxSettings.Read. Unset: they count as the disabled accounts they usually are (includeDisabled)',
    ),
  roomMailboxes: z
    .boolean()
    .optional()
    .describe(
      'Room and equipment mailboxes in (true) or out (false); needs MailboxSettings.Read. Unset: as disabled accounts (includeDisabled)',
    ),
});

export const mailboxSource = z.strictObject({
  type: z.literal('mailbox'),
  mailbox: upn.describe('The (shared) mailbox whose contacts are the source'),
  folder: z
    .string()
    .min(1)
    .nullable()
    .default(null)
    .describe('A subfolder of its Contacts folder; null for the Contacts folder itself'),
});

const fieldRule = z.enum(['overwrite', 'setIfEmpty', 'never']);

export const mappingSchema = z
  .strictObject({
    include: z.array(z.enum(contactFieldNames)).optional().describe('Only these fields (default: all)'),
    exclude: z.array(z.enum(contactFieldNames)).default([]),
    constants: z
      .partialRecord(z.enum(stringFieldNames), z.string())
      .default({})
      .describe('Values written instead of the directory value'),
    categories: z
      .array(z.string().min(1).max(255))
      .max(10)
      .default([])
      .describe('Outlook categories on every synced contact'),
    rules: z
      .partialRecord(z.enum(contactFieldNames), fieldRule)
      .default({})
      .describe('overwrite (default), setIfEmpty (a user edit survives) or never'),
  })
  .default({ exclude: [], constants: {}, categories: [], rules: {} });
export type Mapping = z.output<typeof mappingSchema>;

const ncrontab = z.string().refine(
  (s) => {
    if (s.trim().split(/\s+/).length !== 6) return false;
    try {
      CronExpressionParser.parse(s, { tz: 'UTC' });
      return true;
    } catch {
      return false;
    }
  },
  {
    message: 'must be an NCRONTAB expression with six fields: second minute hour day month day-of-week (UTC)',
  },
);

export const policySchema = z.strictObject({
  id,
  name: z.string().min(1).max(200),
  enabled: z.boolean().default(true),
  connection: id.describe('id of a connection in this file'),
  source: z.discriminatedUnion('type', [directorySource, mailboxSource]),
  targets: z.strictObject({
    type: z.enum(['allMailboxes', 'groups', 'users']),
    groups: z.array(guid).default([]),
    users: z.array(upn).default([]),
    excludeUsers: z.array(upn).default([]),
    excludeGroups: z.array(guid).default([]),
    excludeSelf: z.boolean().default(true).describe("Leave a user's own entry out of their folder"),
  }),
  folder: z.strictObject({
    name: z
      .string()
      .min(1)
      .max(255)
      .refine((s) => s.trim() === s && !/[\\/]/.test(s), 'no leading or trailing spaces, no / or \\')
      .nullable()
      .describe('Subfolder of Contacts; null for the default Contacts folder itself'),
  }),
  mapping: mappingSchema,
  photos: z
    .strictObject({
      enabled: z
        .boolean()
        .default(false)
        .describe("Copy each user's photo to the contacts made from that user"),
      recheckHours: z
        .number()
        .int()
        .min(1)
        .max(24 * 30)
        .default(24)
        .describe(
          'Graph has no change signal for photos: each user is looked at again after this many hours',
        ),
    })
    .default({ enabled: false, recheckHours: 24 }),
  options: z
    .strictObject({
      deletionThreshold: z
        .strictObject({
          percent: z.number().min(0).max(100).default(20),
          minimum: z.number().int().min(0).default(10),
        })
        .default({ percent: 20, minimum: 10 }),
      onUserEdit: z.enum(['restore', 'keep']).default('restore'),
      onUserDelete: z.enum(['restore', 'keep']).default('restore'),
      onSourceRemoval: z.enum(['delete', 'keep', 'keepAndMark']).default('delete'),
      removalCategory: z.string().min(1).default('Removed from directory'),
      dryRun: z.boolean().default(false),
    })
    .default({
      deletionThreshold: { percent: 20, minimum: 10 },
      onUserEdit: 'restore',
      onUserDelete: 'restore',
      onSourceRemoval: 'delete',
      removalCategory: 'Removed from directory',
      dryRun: false,
    }),
  schedule: ncrontab.default('0 0 */4 * * *').describe('NCRONTAB, UTC'),
  notify: z
    .strictObject({
      recipients: z.array(z.email()).default([]),
      sender: upn.optional().describe('Mailbox the report is sent from (needs Mail.Send)'),
      when: z.enum(['always', 'onErrors', 'never']).default('onErrors'),
    })
    .refine((n) => n.when === 'never' || n.recipients.length === 0 || n.sender !== undefined, {
      message: 'a sender mailbox is needed to send reports',
      path: ['sender'],
    })
    .default({ recipients: [], when: 'onErrors' }),
});
export type Policy = z.output<typeof policySchema>;
export type PolicyInput = z.input<typeof policySchema>;

export const policyFileSchema = z.strictObject({
  $schema: z.string().optional(),
  connections: z.array(connectionSchema).min(1),
  policies: z
    .array(z.unknown())
    .describe('Each policy is validated on its own: one bad policy does not stop the others'),
});

/** The JSON Schema for editors: the file, with each policy described in full. */
export function policyFileJsonSchema(): Record<string, unknown> {
  const file = z.toJSONSchema(policyFileSchema.extend({ policies: z.array(policySchema) }), {
    io: 'input',
    unrepresentable: 'any',
  }) as Record<string, unknown>;
  return {
    $id: 'https://m365-contact-sync/policy-file.schema.json',
    title: 'm365-contact-sync policy file',
    ...file,
  };
}
