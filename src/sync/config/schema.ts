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
  'fileAs',
  'initials',
  'middleName',
  'nickName',
  'title',
  'generation',
  'homePhones',
  'homeAddress',
  'otherAddress',
  'imAddresses',
  'businessHomePage',
  'personalNotes',
  'profession',
  'assistantName',
  'businessFax',
  'private',
] as const;
export type ContactFieldName = (typeof contactFieldNames)[number];

/** Fields a policy names in include, exclude and rules (private has its own switch, mapping.private). */
export const policyFieldNames = contactFieldNames.filter(
  (f): f is Exclude<ContactFieldName, 'private'> => f !== 'private',
);

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
  'initials',
  'middleName',
  'nickName',
  'title',
  'generation',
  'businessHomePage',
  'personalNotes',
  'profession',
  'assistantName',
  'businessFax',
] as const;

/** Fields a policy may fill from a directory attribute of its choice (`mapping.sources`). */
export const sourcedFieldNames = [...stringFieldNames, 'homePhones', 'imAddresses'] as const;

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

/** Directory attributes a field may be filled from (users; org contacts and groups where they have one). */
export const sourceAttributes = [
  ...filterableAttributes,
  'displayName',
  'givenName',
  'surname',
  'mail',
  'userPrincipalName',
  'mobilePhone',
  'faxNumber',
  'streetAddress',
  'state',
  'postalCode',
] as const;
export type SourceAttribute = (typeof sourceAttributes)[number];

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

/** What a filter may test: directory attributes, and mailDomain (the primary SMTP address's domain). */
export const filterAttributes = [...filterableAttributes, 'mailDomain'] as const;

const attributeFilter = z.discriminatedUnion('op', [
  z.strictObject({ attribute: z.enum(filterAttributes), op: z.literal('equals'), value: z.string() }),
  z.strictObject({
    attribute: z.enum(filterAttributes),
    op: z.literal('in'),
    values: z.array(z.string()).min(1),
  }),
  z.strictObject({
    attribute: z.enum(filterAttributes),
    op: z.literal('startsWith'),
    value: z.string().min(1),
  }),
  z.strictObject({
    attribute: z.enum(filterAttributes),
    op: z.literal('endsWith'),
    value: z.string().min(1),
  }),
]);
export type AttributeFilter = z.output<typeof attributeFilter>;

/** A filter expression: a test, or all / any / not over expressions. */
export type FilterExpression =
  AttributeFilter | { all: FilterExpression[] } | { any: FilterExpression[] } | { not: FilterExpression };

export const filterExpression: z.ZodType<FilterExpression> = z.lazy(() =>
  z.union([
    attributeFilter,
    z.strictObject({ all: z.array(filterExpression).min(1) }),
    z.strictObject({ any: z.array(filterExpression).min(1) }),
    z.strictObject({ not: filterExpression }),
  ]),
);

export const directorySource = z.strictObject({
  type: z.literal('directory'),
  includeUsers: z.boolean().default(true),
  includeOrgContacts: z.boolean().default(false).describe('Mail contacts from the GAL'),
  includeGroups: z
    .array(guid)
    .default([])
    .describe('Only members of these groups (nested membership counts)'),
  excludeGroups: z.array(guid).default([]),
  filters: z
    .union([z.array(filterExpression), filterExpression])
    .default([])
    .describe(
      'A filter expression ({"attribute", "op": equals | in | startsWith | endsWith, ...}, {"all": [...]}, {"any": [...]}, {"not": ...}); a list means all must match',
    ),
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

export const fileAsModes = ['lastFirst', 'firstLast', 'displayName', 'company'] as const;
/** Fields a file-as template may name. */
export const fileAsTemplateFields = [
  'displayName',
  'givenName',
  'middleName',
  'surname',
  'nickName',
  'initials',
  'title',
  'generation',
  'companyName',
  'department',
  'jobTitle',
  'officeLocation',
] as const;

const fileAs = z
  .string()
  .superRefine((s, ctx) => {
    if ((fileAsModes as readonly string[]).includes(s)) return;
    const names = [...s.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!);
    if (names.length === 0) {
      ctx.addIssue({
        code: 'custom',
        message: `must be ${fileAsModes.join(', ')}, or a template over fields such as "{surname}, {givenName}"`,
      });
      return;
    }
    for (const n of names)
      if (!(fileAsTemplateFields as readonly string[]).includes(n))
        ctx.addIssue({
          code: 'custom',
          message: `the template names {${n}}, which is not a field it may use (${fileAsTemplateFields.join(', ')})`,
        });
  })
  .default('lastFirst')
  .describe(
    'How contacts file and sort in Outlook: lastFirst ("Surname, Given", Outlook\'s default), firstLast, displayName, company, or a template such as "{companyName}: {surname}"',
  );

export const mappingSchema = z
  .strictObject({
    include: z.array(z.enum(policyFieldNames)).optional().describe('Only these fields (default: all)'),
    exclude: z.array(z.enum(policyFieldNames)).default([]),
    constants: z
      .partialRecord(z.enum(stringFieldNames), z.string())
      .default({})
      .describe('Values written instead of the directory value'),
    sources: z
      .partialRecord(z.enum(sourcedFieldNames), z.enum(sourceAttributes))
      .default({})
      .describe(
        'The directory attribute a field is filled from, instead of its default (e.g. {"personalNotes": "extensionAttribute5"})',
      ),
    fileAs,
    splitDisplayName: z
      .boolean()
      .default(false)
      .describe(
        'A person without a given name or surname gets them from the display name ("Ludwig van Beethoven": Ludwig / van Beethoven; one word or CJK: not split)',
      ),
    private: z
      .boolean()
      .default(false)
      .describe(
        'Mark every synced contact private (MAPI sensitivity Private), so delegates with access to the folder do not see them',
      ),
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
  .default({
    exclude: [],
    constants: {},
    sources: {},
    fileAs: 'lastFirst',
    splitDisplayName: false,
    private: false,
    categories: [],
    rules: {},
  });
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

/** Fields a folder template (`"Partners – {companyName}"`) may name: one per template. */
export const folderTemplateFields = filterAttributes;
export type FolderTemplateField = (typeof folderTemplateFields)[number];
/** Folders one template may fill in a mailbox at most (each is a folder row and a pass per run). */
export const maxFoldersLimit = 100;

/**
 * Characters Outlook refuses in the names of folders it shows as address books
 * (PidTagContactAddressBookFolderName): a value's become `-` (folder-template.ts); the text an admin
 * writes around the field, or as emptyValue, is refused instead.
 */
export const outlookRefusedChars = '[]/\\&~?*|<>";:+';
const refusedIn = (s: string): string | undefined => [...s].find((c) => outlookRefusedChars.includes(c));
const refusedMessage = (c: string): string =>
  `"${c}" is one of the characters Outlook refuses in address-book folder names (${outlookRefusedChars.split('').join(' ')})`;

const folderSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(255)
    .refine((s) => s.trim() === s && !/[\\/]/.test(s), 'no leading or trailing spaces, no / or \\')
    .superRefine((s, ctx) => {
      const problem = folderTemplateProblem(s);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .nullable()
    .describe(
      `Subfolder of Contacts; null for the default Contacts folder itself. A template over one field (e.g. "Partners – {companyName}", "{mailDomain}") fills one subfolder per value; fields: ${folderTemplateFields.join(', ')}`,
    ),
  emptyValue: z
    .string()
    .min(1)
    .max(64)
    .refine((s) => s.trim() === s && !/[\\/{}]/.test(s), 'no leading or trailing spaces, no / \\ { }')
    .superRefine((s, ctx) => {
      const c = refusedIn(s);
      if (c) ctx.addIssue({ code: 'custom', message: refusedMessage(c) });
    })
    .default('Other')
    .describe(
      "A folder template's value for contacts without one (and for values past maxFolders): their folder is the template with this value",
    ),
  maxFolders: z
    .number()
    .int()
    .min(2)
    .max(maxFoldersLimit)
    .default(50)
    .describe(
      'A folder template fills this many folders at most: the values with the most contacts get their own, the rest go to the emptyValue folder (the run says so)',
    ),
});

/** The field and the text around it of a folder template; null for a plain folder name. */
export function folderTemplateOf(
  name: string | null,
): { field: FolderTemplateField; before: string; after: string } | null {
  const m = name === null ? null : /^([^{}]*)\{([A-Za-z0-9]+)\}([^{}]*)$/.exec(name);
  if (!m || !(folderTemplateFields as readonly string[]).includes(m[2]!)) return null;
  return { field: m[2] as FolderTemplateField, before: m[1]!, after: m[3]! };
}

function folderTemplateProblem(name: string): string | undefined {
  if (!/[{}]/.test(name)) return undefined;
  const fields = [...name.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!);
  if (/[{}]/.test(name.replace(/\{[^{}]*\}/g, '')))
    return 'a folder template has one {field} and no other brace';
  if (fields.length !== 1)
    return `a folder template names exactly one field in braces, e.g. "Partners – {companyName}" (found ${fields.length})`;
  if (!(folderTemplateFields as readonly string[]).includes(fields[0]!))
    return `unknown field "{${fields[0]}}" in the folder template; fields: ${folderTemplateFields.join(', ')}`;
  const c = refusedIn(name.replace(/\{[^{}]*\}/, ''));
  return c ? `the folder template's own text: ${refusedMessage(c)}` : undefined;
}

export const policySchema = z.strictObject({
  id,
  previousIds: z
    .array(id)
    .max(5)
    .default([])
    .describe(
      "A renamed policy's former ids: each mailbox's contacts of a former id are replaced by the new id's and its state dropped (the id keys the contacts' tags and state)",
    ),
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
  folder: folderSchema,
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
      unmanagedContacts: z
        .enum(['leave', 'adopt', 'remove'])
        .default('leave')
        .describe(
          "Contacts in the folder without our tag (an old tool's): leave them; adopt the ones matching a source object by e-mail address (primary SMTP, then proxy addresses); or adopt those and remove the rest (a folder of the policy's own only, within the deletion threshold)",
        ),
      onTargetRemoval: z
        .enum(['remove', 'keep'])
        .default('remove')
        .describe("A mailbox that leaves the policy's targets: remove our contacts from it, or keep them"),
      allowOnDemandFullResync: z
        .boolean()
        .default(false)
        .describe(
          'Whether a run requested over HTTP may ask for a full resync (it lifts the deletion threshold); off by default, so a function key alone cannot',
        ),
    })
    .default({
      deletionThreshold: { percent: 20, minimum: 10 },
      onUserEdit: 'restore',
      onUserDelete: 'restore',
      onSourceRemoval: 'delete',
      removalCategory: 'Removed from directory',
      dryRun: false,
      unmanagedContacts: 'leave',
      onTargetRemoval: 'remove',
      allowOnDemandFullResync: false,
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
  deletedPolicyGraceDays: z
    .number()
    .int()
    .min(0)
    .max(365)
    .default(7)
    .describe(
      'A policy deleted from this file has its contacts removed after this many days (reported in every run until then)',
    ),
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
