// Watches every operation the simulator answers and checks the bodies against Microsoft's schemas.
import { join } from 'node:path';
import type { GraphTenantSimulator } from '../doubles/graph-tenant-simulator/simulator';
import type { GraphSchemas } from './graph-schemas';

/** Microsoft's Applications.yml has no extract in ../shared; the simulator carries one (its openapi/README.md). */
export const applicationsExtract = join(
  __dirname,
  '../../../test/doubles/graph-tenant-simulator/openapi/applications.openapi.json',
);

const itemSchema: Record<string, string> = {
  '#microsoft.graph.user': 'microsoft.graph.user.with-csdl-additions',
  '#microsoft.graph.orgContact': 'microsoft.graph.orgContact',
  '#microsoft.graph.contact': 'microsoft.graph.contact.with-csdl-additions',
};

const responseSchemas: Record<string, { page?: string; item?: string; whole?: string }> = {
  'users.list': {
    page: 'microsoft.graph.userCollectionResponse',
    item: 'microsoft.graph.user.with-csdl-additions',
  },
  'users.get': { whole: 'microsoft.graph.user.with-csdl-additions' },
  'users.manager': { whole: 'microsoft.graph.user.with-csdl-additions' },
  'users.delta': { page: 'delta.users.response', item: 'microsoft.graph.user.with-csdl-additions' },
  'groups.members': { page: 'microsoft.graph.directoryObjectCollectionResponse' },
  'groups.transitiveMembers': { page: 'microsoft.graph.directoryObjectCollectionResponse' },
  'orgContacts.list': {
    page: 'microsoft.graph.orgContactCollectionResponse',
    item: 'microsoft.graph.orgContact',
  },
  'orgContacts.get': { whole: 'microsoft.graph.orgContact' },
  'orgContacts.delta': { page: 'delta.orgContacts.response', item: 'microsoft.graph.orgContact' },
  'contactFolders.list': {
    page: 'microsoft.graph.contactFolderCollectionResponse',
    item: 'microsoft.graph.contactFolder',
  },
  'contactFolders.get': { whole: 'microsoft.graph.contactFolder' },
  'contactFolders.create': { whole: 'microsoft.graph.contactFolder' },
  'contacts.list': {
    page: 'microsoft.graph.contactCollectionResponse',
    item: 'microsoft.graph.contact.with-csdl-additions',
  },
  'contacts.get': { whole: 'microsoft.graph.contact.with-csdl-additions' },
  'contacts.create': { whole: 'microsoft.graph.contact.with-csdl-additions' },
  'contacts.update': { whole: 'microsoft.graph.contact.with-csdl-additions' },
  'contacts.delta': { page: 'delta.contacts.response', item: 'microsoft.graph.contact.with-csdl-additions' },
  'contacts.photo.get': { whole: 'microsoft.graph.profilePhoto' },
  'users.photo.get': { whole: 'microsoft.graph.profilePhoto' },
};

export interface ConformanceReport {
  violations: string[];
  /** operation → statuses seen */
  seen: Map<string, Set<number>>;
  checkedBodies: number;
}

export function watchConformance(sim: GraphTenantSimulator, schemas: GraphSchemas): ConformanceReport {
  const report: ConformanceReport = { violations: [], seen: new Map(), checkedBodies: 0 };
  const check = (label: string, name: string, value: unknown): void => {
    report.checkedBodies++;
    for (const v of schemas.check(name, value)) report.violations.push(`${label}: ${v}`);
  };
  sim.graph.observer = (operation, req, res) => {
    const statuses = report.seen.get(operation) ?? new Set<number>();
    statuses.add(res.status);
    report.seen.set(operation, statuses);
    const label = `${req.method} ${req.path} → ${res.status}`;
    if (res.status >= 400) {
      check(label, 'microsoft.graph.ODataErrors.ODataError', res.body);
      return;
    }
    // Writes Graph accepted must be valid contacts by Microsoft's schema.
    if ((operation === 'contacts.create' || operation === 'contacts.update') && res.status < 300) {
      check(`${label} (request)`, 'microsoft.graph.contact.with-csdl-additions', req.body);
    }
    const schema = responseSchemas[operation];
    if (!schema || res.body === undefined || Buffer.isBuffer(res.body)) return;
    if (schema.whole) check(label, schema.whole, res.body);
    if (schema.page) {
      for (const v of schemas.check(schema.page, res.body, false)) report.violations.push(`${label}: ${v}`);
      const items = (res.body as { value?: unknown[] }).value ?? [];
      for (const item of items) {
        const it = item as Record<string, unknown>;
        if ('@removed' in it) continue;
        const byType = typeof it['@odata.type'] === 'string' ? itemSchema[it['@odata.type']] : undefined;
        const name = byType ?? schema.item;
        if (name) check(label, name, item);
      }
    }
  };
  return report;
}

/**
 * Checks every successful app registration exchange (applications, service principals, app role
 * assignments, addKey/removeKey), request and response, against the Applications.yml extract.
 */
export function watchApplicationConformance(
  sim: GraphTenantSimulator,
  schemas: GraphSchemas,
): { violations: string[]; checked: Set<string> } {
  const violations: string[] = [];
  const checked = new Set<string>();
  const application = 'microsoft.graph.application';
  const principal = 'microsoft.graph.servicePrincipal';
  const assignment = 'microsoft.graph.appRoleAssignment';
  sim.graph.observer = (operation, req, res) => {
    if (res.status >= 300) return;
    const label = `${req.method} ${req.path} → ${res.status}`;
    const check = (schema: string, what: string, value: unknown): void => {
      const validate = schemas.component(schema, true, applicationsExtract);
      if (!validate(value))
        violations.push(`${label} ${what} ${schema}: ${JSON.stringify(validate.errors?.slice(0, 3))}`);
    };
    const items = (): unknown[] => (res.body as { value: unknown[] }).value;
    const requestAndResponse: Record<string, string> = {
      'applications.create': application,
      'servicePrincipals.create': principal,
      'servicePrincipals.appRoleAssignedTo.create': assignment,
      'servicePrincipals.appRoleAssignments.create': assignment,
    };
    const listed: Record<string, string> = {
      'applications.list': application,
      'servicePrincipals.list': principal,
      'servicePrincipals.appRoleAssignments.list': assignment,
    };
    const created = requestAndResponse[operation];
    if (created) {
      check(created, 'request', req.body);
      check(created, 'response', res.body);
    }
    const item = listed[operation];
    if (item) for (const value of items()) check(item, 'item', value);
    if (operation === 'applications.get') check(application, 'response', res.body);
    if (operation === 'applications.update') check(application, 'request', req.body);
    if (operation === 'applications.addKey') {
      check('action.addKey.request', 'request', req.body);
      check('microsoft.graph.keyCredential', 'response', res.body);
    }
    if (operation === 'applications.removeKey') check('action.removeKey.request', 'request', req.body);
    checked.add(operation);
  };
  return { violations, checked };
}
