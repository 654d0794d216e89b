import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { localOnlySettingKeys, settingKeys } from '../../src/app/settings';

const compiled = resolve(__dirname, '../../infra/main.json');
const repo = resolve(__dirname, '../../..');
type Json = Record<string, any>;

function template(): Json {
  assert.ok(
    existsSync(compiled),
    `${compiled} is missing: npm run infra:build compiles infra/main.bicep (npm test runs it)`,
  );
  return JSON.parse(readFileSync(compiled, 'utf8'));
}

function deployments(t: Json): Json[] {
  const resources = Array.isArray(t.resources) ? t.resources : Object.values(t.resources ?? {});
  return resources.filter((r: Json) => r.type === 'Microsoft.Resources/deployments');
}

function allResources(t: Json): Json[] {
  const resources: Json[] = Array.isArray(t.resources) ? t.resources : Object.values(t.resources ?? {});
  return resources.flatMap((r) => [
    r,
    ...(r.type === 'Microsoft.Resources/deployments' ? allResources(r.properties.template) : []),
  ]);
}

describe('infrastructure (compiled Bicep)', () => {
  it('sets every app setting the app needs in Azure, and none it does not read', () => {
    const fn = deployments(template()).find((d) => d.name === 'functionApp')!;
    const appSettings = Object.keys(fn.properties.parameters.appSettings.value).sort();
    const needed = settingKeys.filter((k) => !localOnlySettingKeys.includes(k)).sort();
    assert.deepEqual(appSettings, needed);
    // The only others are the host's own telemetry settings.
    const text = JSON.stringify(fn.properties.template);
    const hostOwned = [...text.matchAll(/'(APPLICATIONINSIGHTS_[A-Z_]+)'/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(hostOwned)].sort(), [
      'APPLICATIONINSIGHTS_AUTHENTICATION_STRING',
      'APPLICATIONINSIGHTS_CONNECTION_STRING',
    ]);
    assert.ok(
      !/AccountKey|listKeys|FUNCTIONS_WORKER_RUNTIME/.test(JSON.stringify(template())),
      'no keys, no connection strings with keys',
    );
  });

  it('is keyless and locked down: no shared keys, Key Vault RBAC with purge protection, local auth off', () => {
    const resources = allResources(template());
    const storage = resources.find((r) => r.type === 'Microsoft.Storage/storageAccounts' && r.properties)!;
    assert.equal(storage.properties.allowSharedKeyAccess, false);
    const vault = resources.find((r) => r.type === 'Microsoft.KeyVault/vaults' && r.properties)!;
    assert.equal(vault.properties.enableRbacAuthorization, true);
    assert.equal(
      vault.properties.enablePurgeProtection,
      "[if(parameters('enablePurgeProtection'), true(), null())]",
    );
    assert.equal(vault.properties.enableSoftDelete, true);
    assert.equal(
      resources.find((r) => r.type === 'Microsoft.Insights/components' && r.properties)!.properties
        .DisableLocalAuth,
      true,
    );
    const site = resources.find((r) => r.type === 'Microsoft.Web/sites')!;
    assert.equal(site.identity.type, 'UserAssigned');
    assert.equal(site.properties.functionAppConfig.runtime.version, '22');
    const plan = resources.find((r) => r.type === 'Microsoft.Web/serverfarms')!;
    assert.equal(plan.sku.tier, 'FlexConsumption');
  });

  it('creates the queues (with poison queues) and tables the app uses up front, and grants only data-plane roles', () => {
    const t = template();
    const storage = deployments(t).find((d) => d.name === 'storage')!;
    assert.deepEqual(storage.properties.parameters.queues.value.sort(), [
      'mailbox-syncs',
      'mailbox-syncs-poison',
      'policy-runs',
      'policy-runs-poison',
    ]);
    assert.deepEqual(storage.properties.parameters.tables.value.sort(), [
      'syncmailboxes',
      'syncpolicies',
      'syncruns',
      'syncsources',
    ]);
    const roles = JSON.stringify(deployments(t).find((d) => d.name === 'rbac')!.properties.template);
    for (const id of [
      'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
      '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
      '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
      '4633458b-17de-408a-b874-0445c86b69e6',
      '3913510d-42f4-4e42-8a64-420c390055eb',
    ]) {
      assert.ok(roles.includes(id), id);
    }
    assert.ok(!roles.includes('8e3af657-a8ff-443c-a75c-2fe8c4bcb635'), 'never Owner');
    assert.ok(!roles.includes('b24988ac-6180-42a0-ab88-20f7382dd24c'), 'never Contributor');
  });

  it('describes every parameter as Required. or Optional.', () => {
    const check = (t: Json, where: string): void => {
      for (const [name, p] of Object.entries<Json>(t.parameters ?? {})) {
        assert.match(p.metadata?.description ?? '', /^(Required|Optional)\./, `${where}: parameter ${name}`);
      }
      for (const d of deployments(t)) check(d.properties.template, d.name);
    };
    check(template(), 'main');
  });

  it('tags only the Function App with azd-service-name, as azure.yaml names the service', () => {
    const t = template();
    // azd older than 1.23.4 refuses a deployment where two resources carry the tag.
    const resources = allResources(t);
    const tagged = resources.filter((r) => JSON.stringify(r.tags ?? {}).includes('azd-service-name'));
    assert.deepEqual(
      tagged.map((r) => r.type),
      ['Microsoft.Web/sites'],
    );
    assert.match(JSON.stringify(tagged[0]!.tags), /'azd-service-name', parameters\('serviceName'\)/);
    for (const d of deployments(t))
      assert.doesNotMatch(JSON.stringify(d.properties.parameters.tags ?? {}), /azd-service-name/, d.name);
    const plan = resources.find((r) => r.type === 'Microsoft.Web/serverfarms')!;
    assert.equal(plan.tags, "[parameters('tags')]");
    const fn = deployments(t).find((d) => d.name === 'functionApp')!;
    assert.doesNotMatch(JSON.stringify(fn.properties.parameters.tags), /azd-service-name/);
    assert.equal(fn.properties.parameters.serviceName.value, 'api');
    const azureYaml = readFileSync(resolve(repo, 'azure.yaml'), 'utf8');
    assert.match(azureYaml, /^services:\n {2}api:\n/m);
    assert.match(azureYaml, /^\s+azd: '>= 1\.23\.13'$/m);
  });

  it('takes principalType from azd (AZURE_PRINCIPAL_TYPE), so a service principal in a pipeline can deploy', () => {
    const parameters = JSON.parse(readFileSync(resolve(repo, 'infra/main.parameters.json'), 'utf8'));
    assert.equal(parameters.parameters.principalType.value, '${AZURE_PRINCIPAL_TYPE=User}');
    const t = template();
    assert.ok(t.parameters.principalType.allowedValues.includes('ServicePrincipal'));
    const rbac = deployments(t).find((d) => d.name === 'rbac')!;
    assert.equal(rbac.properties.parameters.userPrincipalType.value, "[parameters('principalType')]");
  });

  it('offers only regions with Flex Consumption, through azd location metadata', () => {
    const location = template().parameters.location;
    assert.deepEqual(location.metadata.azd, { type: 'location' });
    assert.equal(location.defaultValue, undefined, 'no default that could fall outside the list');
    assert.ok(location.allowedValues.length >= 20);
    for (const r of ['eastus', 'westeurope', 'swedencentral', 'australiaeast'])
      assert.ok(location.allowedValues.includes(r), r);
    // The canary region and regions without the plan are not offered.
    for (const r of ['eastus2euap', 'westindia', 'brazilsoutheast'])
      assert.ok(!location.allowedValues.includes(r), r);
  });

  it('makes Key Vault purge protection a parameter (on by default) and names resources per resource group', () => {
    const t = template();
    assert.equal(t.parameters.enablePurgeProtection.type, 'bool');
    assert.equal(t.parameters.enablePurgeProtection.defaultValue, true);
    assert.match(t.parameters.enablePurgeProtection.metadata.description, /production/);
    const parameters = JSON.parse(readFileSync(resolve(repo, 'infra/main.parameters.json'), 'utf8'));
    assert.equal(
      parameters.parameters.enablePurgeProtection.value,
      '${AZURE_KEY_VAULT_PURGE_PROTECTION=true}',
    );
    const kv = deployments(t).find((d) => d.name === 'keyVault')!;
    assert.equal(
      kv.properties.parameters.enablePurgeProtection.value,
      "[parameters('enablePurgeProtection')]",
    );
    assert.match(
      t.variables.nameToken,
      /uniqueString\(resourceGroup\(\)\.id, parameters\('environmentName'\)/,
    );
  });

  it('keeps the names of an environment provisioned before names derived from the resource group (resourceToken)', () => {
    const t = template();
    assert.equal(t.parameters.resourceToken.type, 'string');
    assert.equal(t.parameters.resourceToken.defaultValue, '');
    assert.match(t.parameters.resourceToken.metadata.description, /docs\/deploy\.md/);
    const parameters = JSON.parse(readFileSync(resolve(repo, 'infra/main.parameters.json'), 'utf8'));
    assert.equal(parameters.parameters.resourceToken.value, '${AZURE_RESOURCE_TOKEN}');
    // An override replaces the derived token; without one, names derive from the resource group.
    assert.match(
      t.variables.nameToken,
      /^\[if\(empty\(parameters\('resourceToken'\)\), toLower\(uniqueString\(resourceGroup\(\)\.id, parameters\('environmentName'\), parameters\('location'\)\)\), toLower\(parameters\('resourceToken'\)\)\)\]$/,
    );
    const deploy = readFileSync(resolve(repo, 'docs/deploy.md'), 'utf8');
    assert.match(deploy, /AZURE_RESOURCE_TOKEN/);
    assert.match(deploy, /subscription/, 'the warning names the old formula');
  });

  it('accepts the maximum instance counts Flex Consumption accepts (40 to 1000), per function group', () => {
    const t = template();
    const fn = deployments(t).find((d) => d.name === 'functionApp')!;
    for (const p of [
      t.parameters.maximumInstanceCount,
      fn.properties.template.parameters.maximumInstanceCount,
    ]) {
      assert.equal(p.minValue, 40);
      assert.equal(p.maxValue, 1000);
      assert.match(p.metadata.description, /function group/);
    }
    assert.equal(t.parameters.maximumInstanceCount.defaultValue, 40);
  });

  it('uses the app setting names the queue triggers and the code use', () => {
    const source = readFileSync(resolve(__dirname, '../../../src/app/composition.ts'), 'utf8');
    for (const q of ['policy-runs', 'mailbox-syncs']) assert.ok(source.includes(`'${q}'`));
  });
});

describe('least privilege for the app identity (compiled Bicep)', () => {
  const roles = {
    blobOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
    blobContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
    blobReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1',
    queueContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
    tableContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
    secretsUser: '4633458b-17de-408a-b874-0445c86b69e6',
  };
  interface Grant {
    role: string;
    principal: string;
    scopeType: string;
    /** The expression naming the scope's last segment (a parameter, maybe indexed by copyIndex). */
    scopeName: string;
    condition: string | undefined;
  }

  /** The role assignments of the rbac module, one per role (copy loops over a role list expanded). */
  function grants(): { grants: Grant[]; rbac: Json; main: Json } {
    const main = template();
    const rbac = deployments(main).find((d) => d.name === 'rbac')!;
    const t = rbac.properties.template;
    const resources: Json[] = Array.isArray(t.resources) ? t.resources : Object.values(t.resources);
    const out: Grant[] = [];
    for (const r of resources.filter((x) => x.type === 'Microsoft.Authorization/roleAssignments')) {
      const roleExpr: string = r.properties.roleDefinitionId;
      const list = /variables\('(\w+)'\)\[copyIndex\(\)\]/.exec(roleExpr);
      const single = /variables\('(\w+)'\)\)\]$/.exec(roleExpr);
      const variable = (v: string): string => {
        const ref = /^\[variables\('(\w+)'\)\]$/.exec(v);
        return ref ? variable(t.variables[ref[1]!]) : v;
      };
      const ids: string[] = (list ? t.variables[list[1]!] : [t.variables[single![1]!]]).map(variable);
      const scope = /^\[resourceId\('([^']+)', (.*)\)\]$/.exec(r.scope)!;
      for (const role of ids)
        out.push({
          role,
          principal: /parameters\('(\w+)'\)/.exec(r.properties.principalId)![1]!,
          scopeType: scope[1]!,
          scopeName: scope[2]!.split(', ').at(-1)!,
          condition: r.condition,
        });
    }
    return { grants: out, rbac, main };
  }
  const forApp = (g: Grant[]): Grant[] => g.filter((x) => x.principal === 'appPrincipalId');
  const containerParam = (g: Grant): string | undefined =>
    g.scopeType === 'Microsoft.Storage/storageAccounts/blobServices/containers'
      ? /parameters\('(\w+)'\)/.exec(g.scopeName)?.[1]
      : undefined;

  it('gives the app Storage Blob Data Owner on the host containers only, never on the account', () => {
    const { grants: all, rbac, main } = grants();
    const app = forApp(all);
    const owner = app.filter((g) => g.role === roles.blobOwner);
    assert.ok(owner.length > 0);
    assert.deepEqual(new Set(owner.map(containerParam)), new Set(['hostContainerNames']));
    const account = app.filter((g) => g.scopeType === 'Microsoft.Storage/storageAccounts').map((g) => g.role);
    assert.deepEqual(account.sort(), [roles.tableContributor, roles.queueContributor].sort());
    // The host containers: the Functions host's own (created by the storage module) and the package.
    const storage = deployments(main).find((d) => d.name === 'storage')!.properties.template;
    assert.deepEqual(storage.variables.hostContainers, ['azure-webjobs-hosts', 'azure-webjobs-secrets']);
    assert.equal(
      rbac.properties.parameters.hostContainerNames.value,
      "[concat(reference(resourceId('Microsoft.Resources/deployments', 'storage'), '2025-04-01').outputs.hostContainers.value, createArray(variables('deploymentContainer')))]",
    );
    assert.equal(main.variables.deploymentContainer, 'app-package');
  });

  it('makes the policy container read-only to the app (Storage Blob Data Reader on it alone)', () => {
    const { grants: all, rbac, main } = grants();
    const app = forApp(all);
    const onPolicy = app.filter((g) => containerParam(g) === 'policyContainerName');
    assert.deepEqual(
      onPolicy.map((g) => g.role),
      [roles.blobReader],
    );
    assert.equal(rbac.properties.parameters.policyContainerName.value, "[variables('configContainer')]");
    // The blob the app reads is in that container, and no writable grant covers it.
    const fn = deployments(main).find((d) => d.name === 'functionApp')!;
    assert.match(
      fn.properties.parameters.appSettings.value.POLICY_BLOB_URL,
      /variables\('configContainer'\)/,
    );
    assert.deepEqual(rbac.properties.parameters.appContainerNames.value, ["[variables('photoContainer')]"]);
    assert.notEqual(main.variables.configContainer, main.variables.photoContainer);
    assert.notEqual(main.variables.configContainer, main.variables.deploymentContainer);
    const writable = app.filter((g) => g.role === roles.blobContributor || g.role === roles.blobOwner);
    assert.ok(writable.every((g) => containerParam(g) !== 'policyContainerName'));
  });

  it('gives the deploying principal blob write on the policy container only, never on the account', () => {
    const { grants: all } = grants();
    const user = all.filter((g) => g.principal === 'userPrincipalId');
    const blob = user.filter((g) =>
      [roles.blobContributor, roles.blobOwner, roles.blobReader].includes(g.role),
    );
    assert.deepEqual(
      blob.map((g) => [g.role, containerParam(g)]),
      [[roles.blobContributor, 'policyContainerName']],
      'Storage Blob Data Contributor on the policy container alone',
    );
    assert.ok(
      user.every((g) => g.scopeType !== 'Microsoft.Storage/storageAccounts'),
      'no role of the deploying principal on the whole storage account',
    );
  });

  it('grants Key Vault Secrets User on the certificate secret, not the vault', () => {
    const { grants: all, main } = grants();
    const vault = forApp(all).filter((g) => g.role === roles.secretsUser);
    assert.equal(vault.length, 1);
    assert.equal(vault[0]!.scopeType, 'Microsoft.KeyVault/vaults/secrets');
    assert.match(vault[0]!.scopeName, /parameters\('certificateName'\)/);
    assert.match(vault[0]!.condition ?? '', /not\(empty\(parameters\('certificateName'\)\)\)/);
    assert.ok(
      forApp(all).every((g) => g.scopeType !== 'Microsoft.KeyVault/vaults'),
      'no app role on the whole vault',
    );
    assert.ok(main.parameters.certificateName, 'main.bicep takes the certificate name');
  });
});
