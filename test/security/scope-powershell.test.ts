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
