// Issue 16 item 2: the PowerShell `scope` prints runs in an Exchange administrator's session, so no
// value from the policy file may end a string literal. PowerShell takes ' and U+2018-U+201B as
// single quotes (CharExtensions.IsSingleQuote in PowerShell's tokenizer; CodeGeneration.
// EscapeSingleQuotedStringContent doubles each of them).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main';
import { parsePolicyFile } from '../../src/sync/config/policy-file';
import { psString, scopeScript } from '../../src/cli/scope-script';

export const powerShellSingleQuotes = ["'", '\u2018', '\u2019', '\u201A', '\u201B'];
const isQuote = (c: string | undefined): boolean => c !== undefined && powerShellSingleQuotes.includes(c);

/**
 * Reads a line as PowerShell's tokenizer reads single-quoted strings: a quote opens a literal, two
 * quotes inside it are one quote, a lone quote closes it. Returns the literals and the code outside.
 */
export function powerShellLiterals(line: string): { literals: string[]; code: string; unclosed: boolean } {
  const literals: string[] = [];
  let code = '';
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '"') {
      // Double-quoted strings in the fixed text hold no policy values; keep them as code.
      const end = line.indexOf('"', i + 1);
      code += line.slice(i, end + 1);
      i = end + 1;
    } else if (isQuote(c)) {
      let value = '';
      i++;
      for (;;) {
        if (i >= line.length) return { literals, code, unclosed: true };
        const d = line[i]!;
        if (isQuote(d) && isQuote(line[i + 1])) {
          value += d;
          i += 2;
        } else if (isQuote(d)) {
          i++;
          break;
        } else {
          value += d;
          i++;
        }
      }
      literals.push(value);
    } else {
      code += c;
      i++;
    }
  }
  return { literals, code, unclosed: false };
}

const connection = {
  id: 'contoso',
  tenantId: '00000000-0000-4000-8000-000000000001',
  clientId: '00000000-0000-4000-8000-000000000002',
  certificate: { pemFile: 'app.pem' },
};
const policy = (users: string[], sender = 'reports@contoso.example') => ({
  id: 'scoped',
  name: 'Scoped',
  connection: 'contoso',
  source: { type: 'directory' },
  targets: { type: 'users', users },
  folder: { name: 'Directory' },
  notify: { recipients: ['it@contoso.example'], sender, when: 'always' },
});

async function cliScope(file: object): Promise<{ code: number; out: string; err: string }> {
  const path = join(mkdtempSync(join(tmpdir(), 'scope-')), 'policies.json');
  writeFileSync(path, JSON.stringify(file));
  let out = '';
  let err = '';
  const code = await main(['scope', '--config', path, '--policy', 'scoped'], {
    out: (l) => (out += l + '\n'),
    err: (l) => (err += l + '\n'),
    isTTY: false,
  });
  return { code, out, err };
}

describe('scope: PowerShell quoting', () => {
  it('refuses a UPN with a typographic single quote, naming the field, and prints no script', async () => {
    for (const q of powerShellSingleQuotes.slice(1)) {
      // No whitespace: the UPN rule refuses that anyway; this one passed it before the fix.
      const upn = `x${q};Remove-Mailbox(${q}ceo${q});${q}@contoso.example`;
      const target = await cliScope({
        connections: [connection],
        policies: [policy(['a@contoso.example', upn])],
      });
      assert.equal(target.code, 2, `U+${q.charCodeAt(0).toString(16)}: ${target.out}`);
      assert.match(
        target.err,
        /policies\[0\]\.targets\.users\[1\]: must not contain typographic single quotes/,
      );
      assert.doesNotMatch(target.out, /New-ManagementScope/);
      const sender = await cliScope({
        connections: [connection],
        policies: [policy(['a@contoso.example'], upn)],
      });
      assert.equal(sender.code, 2);
      assert.match(sender.err, /policies\[0\]\.notify\.sender: must not contain typographic single quotes/);
    }
  });

  it("escapes the ASCII quote a real UPN may hold (o'neil) at both levels", async () => {
    const r = await cliScope({
      connections: [connection],
      policies: [policy(['a@contoso.example', "o'neil@contoso.example"], "d'arcy@contoso.example")],
    });
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes("UserPrincipalName -eq ''o''''neil@contoso.example''"), r.out);
    for (const line of r.out.split('\n')) assert.equal(powerShellLiterals(line).unclosed, false, line);
  });

  it('leaves excludeUsers out of the scope, for a users-scope and an all-mailboxes policy', async () => {
    const excluded = 'ceo@contoso.example';
    const users = await cliScope({
      connections: [connection],
      policies: [
        {
          ...policy(['CEO@contoso.example', 'a@contoso.example']),
          targets: {
            type: 'users',
            users: ['CEO@contoso.example', 'a@contoso.example'],
            excludeUsers: [excluded],
          },
        },
      ],
    });
    assert.equal(users.code, 0, users.err);
    const scope = users.out
      .split('\n')
      .find((l) => l.startsWith("New-ManagementScope -Name 'ContactSync-scoped'"))!;
    assert.doesNotMatch(scope, /ceo@contoso\.example/i, 'an excluded user is not in the scope');
    assert.match(scope, /a@contoso\.example/);
    assert.match(users.out, /Test-ServicePrincipalAuthorization .*'a@contoso\.example'/);
    const all = await cliScope({
      connections: [connection],
      policies: [{ ...policy([]), targets: { type: 'allMailboxes', excludeUsers: [excluded] } }],
    });
    assert.equal(all.code, 0, all.err);
    assert.match(all.out, /-and -not \(UserPrincipalName -eq ''ceo@contoso\.example''\)/);
  });

  it('psString keeps every PowerShell quote character inside the literal', () => {
    for (const q of powerShellSingleQuotes) {
      for (const value of [q, `${q}${q}`, `a${q}b`, `${q}; Remove-Mailbox ceo; ${q}`, `x${q}`]) {
        const parsed = powerShellLiterals(`Set-X -Name ${psString(value)} -Y 1`);
        assert.deepEqual(parsed.literals, [value], JSON.stringify(value));
        assert.equal(parsed.code, 'Set-X -Name  -Y 1');
      }
    }
  });

  it('the script keeps a crafted UPN that slipped past the schema inside its literals, at both levels', () => {
    const loaded = parsePolicyFile(
      JSON.stringify({ connections: [connection], policies: [policy(['a@contoso.example'])] }),
    );
    const valid = loaded.policies[0]!;
    for (const q of powerShellSingleQuotes) {
      const upn = `x${q};Remove-Mailbox(${q}ceo${q});${q}@contoso.example`;
      const crafted = {
        ...valid,
        targets: { ...valid.targets, users: [upn] },
        notify: { ...valid.notify, sender: upn },
      };
      const lines = scopeScript(crafted, loaded.connections.get('contoso')!, [crafted]);
      for (const line of lines.filter((l) => !l.startsWith('#'))) {
        const outer = powerShellLiterals(line);
        assert.equal(outer.unclosed, false, line);
        assert.doesNotMatch(outer.code, /Remove-Mailbox/, line);
        // The filter literal holds an OPATH filter with quoted values of its own.
        for (const literal of outer.literals.filter((l) => l.includes('UserPrincipalName -eq'))) {
          const inner = powerShellLiterals(literal);
          assert.deepEqual(inner.literals, [upn], literal);
          assert.doesNotMatch(inner.code, /Remove-Mailbox/);
        }
      }
    }
  });
});

describe('scope: complete (issue 17 item 6)', () => {
  const groupA = '00000000-0000-4000-8000-0000000000a1';
  const groupB = '00000000-0000-4000-8000-0000000000b2';
  const away = '00000000-0000-4000-8000-0000000000c3';
  const hostile = "o'neil';Remove-Mailbox('ceo');'@contoso.example";
  const script = async (p: object): Promise<string[]> => {
    const r = await cliScope({ connections: [connection], policies: [p] });
    assert.equal(r.code, 0, r.err);
    return r.out.trimEnd().split('\n');
  };
  const code = (lines: string[]): string[] => lines.filter((l) => !l.startsWith('#'));
  /** Every literal closes, and no value from the policy file reaches the code outside a literal. */
  const assertQuoted = (lines: string[]): void => {
    for (const line of code(lines)) {
      const parsed = powerShellLiterals(line);
      assert.equal(parsed.unclosed, false, line);
      assert.doesNotMatch(parsed.code, /Remove-Mailbox/, line);
    }
  };

  it('connects to Microsoft Graph and Exchange Online before it uses them', async () => {
    const lines = code(await script(policy(['a@contoso.example'])));
    const first = (re: RegExp): number => lines.findIndex((l) => re.test(l));
    assert.ok(first(/^Connect-MgGraph -TenantId '[0-9a-f-]+' -Scopes /) >= 0, lines.join('\n'));
    assert.ok(first(/^Connect-ExchangeOnline/) >= 0);
    assert.ok(first(/^Connect-MgGraph/) < first(/Get-MgServicePrincipal/));
    assert.ok(first(/^Connect-ExchangeOnline/) < first(/^New-ServicePrincipal/));
  });

  it('group targets resolve to their nested members, less excludeGroups and excludeUsers, each UPN escaped', async () => {
    const lines = await script({
      ...policy([]),
      targets: {
        type: 'groups',
        groups: [groupA, groupB],
        excludeGroups: [away],
        excludeUsers: [hostile],
      },
    });
    const text = lines.join('\n');
    assert.doesNotMatch(text, /<distinguished name/, 'no placeholder for the admin to fill in');
    assert.match(text, /Get-MgGroupTransitiveMemberAsUser -GroupId \$_ -All/, 'nested members count');
    assert.ok(
      text.includes(
        `$excluded = @(Get-ContactSyncMembers @('${away}')) + @('o''neil'';Remove-Mailbox(''ceo'');''@contoso.example')`,
      ),
      text,
    );
    assert.ok(text.includes(`@(Get-ContactSyncMembers @('${groupA}', '${groupB}'))`), text);
    assert.match(text, /Where-Object \{ \$excluded -notcontains \$_ \}/);
    // Members' UPNs are escaped for the OPATH literal when the script runs: every PowerShell quote doubled.
    assert.ok(text.includes(`-replace '[''\\u2018-\\u201B]', '$0$0'`), text);
    assert.match(text, /New-ManagementScope -Name 'ContactSync-scoped' -RecipientRestrictionFilter \$filter/);
    assert.match(text, /Test-ServicePrincipalAuthorization -Identity \$sp\.AppId -Resource \$upns\[0\]/);
    assert.match(text, /# .*nested members.*MemberOfGroup/s, 'says why it lists members');
    assertQuoted(lines);
  });

  it('runs again without failing: what exists is updated or kept; an empty member list stops it', async () => {
    const lines = await script({ ...policy([]), targets: { type: 'groups', groups: [groupA] } });
    const text = lines.join('\n');
    assert.match(
      text,
      /if \(-not \(Get-ServicePrincipal -Identity \$appId -ErrorAction SilentlyContinue\)\) \{\nNew-ServicePrincipal /,
    );
    assert.match(
      text,
      /if \(Get-ManagementScope -Identity 'ContactSync-scoped' -ErrorAction SilentlyContinue\) \{\n {2}Set-ManagementScope -Identity 'ContactSync-scoped' -RecipientRestrictionFilter \$filter\n\} else \{\nNew-ManagementScope /,
    );
    assert.match(
      text,
      /if \(-not \(Get-ManagementRoleAssignment -Identity 'ContactSync-scoped' -ErrorAction SilentlyContinue\)\) \{\nNew-ManagementRoleAssignment .* -Name 'ContactSync-scoped'\n\}/,
    );
    assert.match(text, /if \(\$upns\.Count -eq 0\) \{ throw /);
    assert.match(text, /snapshot: run this script again when group membership changes/);
    assertQuoted(lines);
  });

  it('excludeGroups on an all-mailboxes policy leave their members out', async () => {
    const lines = await script({
      ...policy([]),
      targets: { type: 'allMailboxes', excludeGroups: [away], excludeUsers: ['boss@contoso.example'] },
    });
    const text = lines.join('\n');
    assert.ok(
      text.includes(`$excluded = @(Get-ContactSyncMembers @('${away}')) + @('boss@contoso.example')`),
      text,
    );
    assert.match(text, /\$filter = "RecipientTypeDetails -eq 'UserMailbox'"/);
    assert.match(text, /-and -not \(/);
    assertQuoted(lines);
  });

  it('the source shared mailbox is in the scope (its contacts are read with the same permission)', async () => {
    const shared = "sh'ared@contoso.example";
    const lines = await script({
      ...policy(['a@contoso.example']),
      source: { type: 'mailbox', mailbox: shared },
    });
    const scope = lines.find((l) => l.startsWith("New-ManagementScope -Name 'ContactSync-scoped'"))!;
    const literal = powerShellLiterals(scope).literals[1]!;
    assert.deepEqual(powerShellLiterals(literal).literals, ['a@contoso.example', shared]);
    const grouped = await script({
      ...policy([]),
      source: { type: 'mailbox', mailbox: shared },
      targets: { type: 'groups', groups: [groupA] },
    });
    assert.ok(grouped.join('\n').includes(`@($upns + @('sh''ared@contoso.example'))`), grouped.join('\n'));
    assertQuoted(grouped);
  });
});
