// Builds a tenant from a seed file (see README.md) or generates one with the awkward data real tenants hold.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Tenant, type SimUser } from './tenant';

const nullableString = z.string().nullable().optional();

const seedUser = z
  .object({
    id: z.string().optional(),
    userPrincipalName: z.string(),
    displayName: nullableString,
    givenName: nullableString,
    surname: nullableString,
    mail: nullableString,
    proxyAddresses: z.array(z.string()).optional(),
    businessPhones: z.array(z.string()).optional(),
    mobilePhone: nullableString,
    jobTitle: nullableString,
    department: nullableString,
    companyName: nullableString,
    officeLocation: nullableString,
    streetAddress: nullableString,
    city: nullableString,
    state: nullableString,
    postalCode: nullableString,
    country: nullableString,
    usageLocation: nullableString,
    accountEnabled: z.boolean().optional(),
    hiddenFromAddressListsEnabled: z
      .boolean()
      .optional()
      .describe("Exchange's flag; Graph's showInAddressList stays null for users, as in the service"),
    userType: z.enum(['Member', 'Guest']).optional(),
    extensionAttributes: z.record(z.string(), z.string().nullable()).optional(),
    manager: z.string().optional().describe('userPrincipalName of the manager'),
    mailbox: z.enum(['user', 'shared', 'room', 'none']).optional(),
  })
  .strict();

const seedGroup = z
  .object({
    id: z.string().optional(),
    displayName: z.string(),
    mail: nullableString,
    mailEnabled: z.boolean().optional(),
    securityEnabled: z.boolean().optional(),
    hideFromAddressLists: z.boolean().optional(),
    members: z
      .array(z.string())
      .default([])
      .describe('userPrincipalNames, group display names or org contact mails'),
  })
  .strict();

const seedOrgContact = z
  .object({
    id: z.string().optional(),
    displayName: z.string(),
    givenName: nullableString,
    surname: nullableString,
    mail: nullableString,
    companyName: nullableString,
    jobTitle: nullableString,
    businessPhone: nullableString,
  })
  .strict();

export const generateOptions = z
  .object({
    users: z.number().int().min(0).max(200_000).default(120),
    mailboxes: z.number().int().min(0).max(200_000).default(25),
    groups: z.number().int().min(0).max(1000).default(6),
    orgContacts: z.number().int().min(0).max(100_000).default(10),
    awkward: z
      .boolean()
      .default(true)
      .describe('add guests, disabled, shared, room, hidden and hostile-data users'),
  })
  .strict();
export type GenerateOptions = z.input<typeof generateOptions>;

export const seedFile = z
  .object({
    tenantId: z.string().uuid().optional(),
    domain: z.string().default('contoso.example'),
    seed: z.number().int().default(1),
    generate: generateOptions.optional(),
    users: z.array(seedUser).default([]),
    groups: z.array(seedGroup).default([]),
    orgContacts: z.array(seedOrgContact).default([]),
  })
  .strict();
export type SeedFile = z.input<typeof seedFile>;

export function readSeedFile(path: string): SeedFile {
  const parsed = seedFile.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`seed file ${path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

const firstNames = [
  'Ada',
  'Bjørn',
  'Chloé',
  'Dmitri',
  'Eun-ji',
  'Fatima',
  'Gustavo',
  'Hana',
  'Ivan',
  'Jürgen',
  'Kofi',
  'Lea',
  'Mateo',
  'Nadia',
  'Oskar',
  'Priya',
  'Quentin',
  'Rosa',
  'Sven',
  'Tomás',
  'Uma',
  'Viktor',
  'Wen',
  'Xavier',
  'Yusuf',
  'Zoë',
];
const lastNames = [
  'Andersen',
  'Bauer',
  'Costa',
  'Dubois',
  'Eriksen',
  'Fischer',
  'García',
  'Hoffmann',
  'Ito',
  'Jansen',
  'Kowalski',
  'Larsen',
  'Müller',
  'Nguyen',
  'Olsen',
  'Petrov',
  'Rossi',
  'Schmidt',
  'Tanaka',
  'Ueda',
  'Varga',
  'Weber',
  'Yilmaz',
  'Zimmermann',
];
const departments = ['Sales', 'Engineering', 'Finance', 'Support', 'Marketing', 'Legal'];
const offices = [
  {
    city: 'Berlin',
    country: 'Germany',
    usageLocation: 'DE',
    officeLocation: 'BER-2',
    postalCode: '10115',
    street: 'Invalidenstraße 1',
  },
  {
    city: 'Copenhagen',
    country: 'Denmark',
    usageLocation: 'DK',
    officeLocation: 'CPH-1',
    postalCode: '1050',
    street: 'Kongens Nytorv 2',
  },
  {
    city: 'Seattle',
    country: 'United States',
    usageLocation: 'US',
    officeLocation: 'SEA-40',
    postalCode: '98101',
    street: '1 Pike St',
  },
];

function asciiFold(s: string): string {
  return s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/ø/g, 'o')
    .replace(/[^A-Za-z0-9]/g, '')
    .toLowerCase();
}

export function generateTenant(tenant: Tenant, input: GenerateOptions = {}): void {
  const options = generateOptions.parse(input);
  const r = tenant.random;
  const d = tenant.domain;
  const userIds: string[] = [];
  const byDepartment = new Map<string, string[]>();
  for (let i = 0; i < options.users; i++) {
    const given = r.pick(firstNames);
    const sur = r.pick(lastNames);
    const nick = `${asciiFold(given)}.${asciiFold(sur)}${i}`;
    const office = r.pick(offices);
    const department = r.pick(departments);
    const hasMailbox = i < options.mailboxes;
    const user = tenant.addUser({
      userPrincipalName: `${nick}@${d}`,
      displayName: `${given} ${sur}`,
      givenName: given,
      surname: sur,
      mail: hasMailbox ? `${nick}@${d}` : null,
      proxyAddresses: hasMailbox ? [`SMTP:${nick}@${d}`, `smtp:${asciiFold(given)}${i}@${d}`] : [],
      businessPhones: [`+1 555 01${String(i % 100).padStart(2, '0')} ${String(1000 + i)}`],
      mobilePhone: r.chance(0.7) ? `+1 555 02${String(i % 100).padStart(2, '0')} ${String(2000 + i)}` : null,
      jobTitle: r.pick(['Engineer', 'Manager', 'Analyst', 'Consultant', 'Director', 'Specialist']),
      department,
      companyName: 'Contoso Ltd',
      officeLocation: office.officeLocation,
      streetAddress: office.street,
      city: office.city,
      postalCode: office.postalCode,
      country: office.country,
      usageLocation: office.usageLocation,
      managerId:
        userIds.length > 0 && r.chance(0.8)
          ? r.pick(userIds.slice(0, Math.max(1, Math.ceil(userIds.length / 10))))
          : null,
      mailbox: hasMailbox ? 'user' : 'none',
    });
    userIds.push(user.id);
    byDepartment.set(department, [...(byDepartment.get(department) ?? []), user.id]);
  }

  if (options.awkward) addAwkwardObjects(tenant, userIds);

  tenant.addGroup({
    displayName: 'All Staff',
    mail: `allstaff@${d}`,
    mailEnabled: true,
    securityEnabled: false,
    groupTypes: ['Unified'],
    members: userIds,
  });
  const deptGroups = departments
    .slice(0, Math.max(0, options.groups - 1))
    .map((dept) => tenant.addGroup({ displayName: `Dept ${dept}`, members: byDepartment.get(dept) ?? [] }));
  // A nested group: "Sales EMEA" inside "Dept Sales", so transitive membership matters.
  const sales = deptGroups[0];
  if (sales) {
    const salesMembers = byDepartment.get('Sales') ?? [];
    const emea = tenant.addGroup({
      displayName: 'Sales EMEA',
      members: salesMembers.slice(0, Math.ceil(salesMembers.length / 2)),
    });
    tenant.addMember(sales.id, emea.id);
  }

  for (let i = 0; i < options.orgContacts; i++) {
    const given = r.pick(firstNames);
    const sur = r.pick(lastNames);
    tenant.addOrgContact({
      displayName: `${given} ${sur} (Fabrikam)`,
      givenName: given,
      surname: sur,
      mail: `${asciiFold(given)}.${asciiFold(sur)}${i}@fabrikam.example`,
      companyName: 'Fabrikam',
      jobTitle: 'Partner',
      proxyAddresses: [`SMTP:${asciiFold(given)}.${asciiFold(sur)}${i}@fabrikam.example`],
      phones: [{ type: 'business', number: `+44 20 7946 ${String(i).padStart(4, '0')}` }],
      addresses: [],
    });
  }
}

/** What real tenants hold and naive sync tools trip over. */
function addAwkwardObjects(tenant: Tenant, userIds: string[]): void {
  const d = tenant.domain;
  const ext = (attrs: Record<string, string>): Record<string, string | null> => attrs;
  const add = (u: Partial<SimUser> & { userPrincipalName: string }): void => {
    userIds.push(tenant.addUser(u).id);
  };
  add({
    userPrincipalName: `guest_partner.example#EXT#@${d}`,
    displayName: 'Guest Partner',
    mail: 'guest@partner.example',
    userType: 'Guest',
    mailbox: 'none',
  });
  add({
    userPrincipalName: `former.employee@${d}`,
    displayName: 'Former Employee',
    givenName: 'Former',
    surname: 'Employee',
    mail: `former.employee@${d}`,
    accountEnabled: false,
    mailbox: 'user',
  });
  add({
    userPrincipalName: `unlicensed.user@${d}`,
    displayName: 'Unlicensed User',
    mail: null,
    mailbox: 'none',
  });
  add({
    userPrincipalName: `no.exchange@${d}`,
    displayName: 'No Exchange Licence',
    mail: `no.exchange@${d}`,
    mailbox: 'none',
  });
  add({
    userPrincipalName: `reception@${d}`,
    displayName: 'Reception (shared)',
    mail: `reception@${d}`,
    accountEnabled: false,
    mailbox: 'shared',
    businessPhones: ['+1 555 0100 1000'],
  });
  add({
    userPrincipalName: `boardroom@${d}`,
    displayName: 'Boardroom',
    mail: `boardroom@${d}`,
    accountEnabled: false,
    mailbox: 'room',
  });
  add({
    userPrincipalName: `hidden.exec@${d}`,
    displayName: 'Hidden Executive',
    mail: `hidden.exec@${d}`,
    hiddenFromAddressListsEnabled: true,
    mailbox: 'user',
  });
  add({
    userPrincipalName: `opted.out@${d}`,
    displayName: 'Opted Out',
    mail: `opted.out@${d}`,
    mailbox: 'user',
    onPremisesExtensionAttributes: ext({ extensionAttribute7: 'NoContactSync' }),
  });
  add({
    userPrincipalName: `no.folder@${d}`,
    displayName: 'No Folder Please',
    mail: `no.folder@${d}`,
    mailbox: 'user',
    onPremisesExtensionAttributes: ext({ extensionAttribute15: 'NoMailboxSync' }),
  });
  add({
    userPrincipalName: `o.brien@${d}`,
    displayName: "Seán O'Brien",
    givenName: 'Seán',
    surname: "O'Brien",
    mail: `o.brien@${d}`,
    department: "R&D 'Labs'",
    mailbox: 'user',
  });
  add({
    userPrincipalName: `script.kiddie@${d}`,
    displayName: '<script>alert("x")</script> & <b>Bold</b>',
    givenName: '<img src=x onerror=alert(1)>',
    surname: 'Kiddie',
    mail: `script.kiddie@${d}`,
    jobTitle: '"; DROP TABLE contacts; --',
    mailbox: 'user',
  });
  add({
    userPrincipalName: `rtl.emoji@${d}`,
    displayName: 'מרים כהן 🚀',
    givenName: 'מרים',
    surname: 'כהן',
    mail: `rtl.emoji@${d}`,
    jobTitle: 'مهندس 👩‍💻',
    mailbox: 'user',
  });
  add({
    userPrincipalName: `many.addresses@${d}`,
    displayName: 'Many Addresses',
    mail: `many.addresses@${d}`,
    mailbox: 'user',
    proxyAddresses: [
      'SMTP:many.addresses@' + d,
      'smtp:many@' + d,
      'smtp:m.a@' + d,
      'smtp:ma@' + d,
      'smtp:addresses@' + d,
    ],
    businessPhones: ['+1 555 0199 0001'],
  });
  add({
    userPrincipalName: `long.fields@${d}`,
    displayName: 'L'.repeat(256),
    mail: `long.fields@${d}`,
    jobTitle: 'J'.repeat(128),
    department: 'D'.repeat(64),
    streetAddress: 'S'.repeat(1024),
    mailbox: 'user',
  });
  add({
    userPrincipalName: `null.fields@${d}`,
    displayName: null,
    givenName: null,
    surname: null,
    mail: `null.fields@${d}`,
    businessPhones: [],
    mailbox: 'user',
  });
}

export function buildTenant(seed: SeedFile | undefined, clock?: () => number): Tenant {
  const s = seedFile.parse(seed ?? { generate: {} });
  const tenant = new Tenant(s.tenantId ?? seededTenantId(s.seed), s.domain, s.seed, clock);
  if (s.generate) generateTenant(tenant, s.generate);
  const byUpn = (upn: string): string | undefined => tenant.user(upn)?.id;
  for (const u of s.users) {
    const { extensionAttributes, manager: _manager, ...rest } = u;
    tenant.addUser({
      ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
      userPrincipalName: u.userPrincipalName,
      onPremisesExtensionAttributes: extensionAttributes ?? {},
    });
  }
  for (const u of s.users) {
    if (u.manager) {
      const managerId = byUpn(u.manager);
      if (!managerId)
        throw new Error(`seed file: users[${u.userPrincipalName}].manager: no user ${u.manager}`);
      tenant.updateUser(u.userPrincipalName, { managerId });
    }
  }
  for (const c of s.orgContacts) {
    tenant.addOrgContact({
      ...(c.id ? { id: c.id } : {}),
      displayName: c.displayName,
      givenName: c.givenName ?? null,
      surname: c.surname ?? null,
      mail: c.mail ?? null,
      companyName: c.companyName ?? null,
      jobTitle: c.jobTitle ?? null,
      proxyAddresses: c.mail ? [`SMTP:${c.mail}`] : [],
      phones: c.businessPhone ? [{ type: 'business', number: c.businessPhone }] : [],
    });
  }
  const groups = s.groups.map((g) =>
    tenant.addGroup({
      ...(g.id ? { id: g.id } : {}),
      displayName: g.displayName,
      mail: g.mail ?? null,
      mailEnabled: g.mailEnabled ?? false,
      securityEnabled: g.securityEnabled ?? true,
      hideFromAddressLists: g.hideFromAddressLists ?? false,
    }),
  );
  s.groups.forEach((g, i) => {
    for (const member of g.members) {
      const id =
        byUpn(member) ??
        groups.find((x) => x.displayName === member)?.id ??
        [...tenant.orgContacts.values()].find((c) => c.mail === member)?.id;
      if (!id) throw new Error(`seed file: groups[${i}].members: no user, group or org contact "${member}"`);
      tenant.addMember(groups[i]!.id, id);
    }
  });
  return tenant;
}

function seededTenantId(seed: number): string {
  const hex = (seed >>> 0).toString(16).padStart(8, '0');
  return `${hex}-0000-4000-8000-00000000c0de`.replace(/^(.{8})/, hex);
}
