// Reads the parts of a MIME message the way a mail client shows them.
export /** The text and HTML parts of a MIME message (quoted-printable or base64). */
function decodeParts(mime: string): { text: string; html: string } {
  const part = (type: string): string => {
    const m = new RegExp(
      `Content-Type: ${type}[^\\r\\n]*\\r?\\n((?:[^\\r\\n]+\\r?\\n)*)\\r?\\n([\\s\\S]*?)(?=\\r?\\n--)`,
    ).exec(mime);
    if (!m) return '';
    const headers = m[1] ?? '';
    const body = m[2] ?? '';
    if (/base64/i.test(headers)) return Buffer.from(body.replace(/\s/g, ''), 'base64').toString('utf8');
    if (/quoted-printable/i.test(headers)) {
      const bytes = body
        .replace(/=\r?\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16)));
      return Buffer.from(bytes, 'latin1').toString('utf8');
    }
    return body;
  };
  return { text: part('text/plain'), html: part('text/html') };
}
