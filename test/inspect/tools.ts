/** Test helpers: a tiny HTML well-formedness check and tshark. */
import { execFileSync } from 'node:child_process';

const VOID = new Set(['meta', 'br', 'hr', 'img', 'link', 'input', 'wbr']);

/**
 * Problems that would make a browser guess: elements not closed or closed
 * out of order, a raw '<' in text, external assets or scripts. Empty = fine.
 */
export function htmlProblems(html: string): string[] {
  const problems: string[] = [];
  if (!/^<!DOCTYPE html>\n<html[\s>]/.test(html)) problems.push('no <!DOCTYPE html> followed by <html>');
  if (/<script\b/i.test(html)) problems.push('has a <script>');
  if (/\b(src|href)\s*=\s*["']?(https?:|\/\/|file:)/i.test(html)) problems.push('refers to an external asset');
  if (/<link\b/i.test(html)) problems.push('has a <link> (external stylesheet)');
  const stack: string[] = [];
  const tag = /<!DOCTYPE[^>]*>|<\/?([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z-]+(?:="[^"]*")?)*)\s*>/g;
  let last = 0;
  for (let m = tag.exec(html); m; m = tag.exec(html)) {
    const text = html.slice(last, m.index);
    if (text.includes('<')) problems.push(`raw '<' in text near offset ${last}: ${JSON.stringify(text.slice(text.indexOf('<'), text.indexOf('<') + 30))}`);
    last = tag.lastIndex;
    const name = m[1]?.toLowerCase();
    if (!name) continue;
    if (m[0].startsWith('</')) {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}> at offset ${m.index}`);
    } else if (!VOID.has(name)) stack.push(name);
  }
  if (html.slice(last).includes('<')) problems.push("raw '<' after the last tag");
  if (stack.length) problems.push(`not closed: ${stack.join(', ')}`);
  return problems;
}

export function haveTshark(): boolean {
  try {
    execFileSync('tshark', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `tshark -r file -T fields -e ...`: one array of field values per packet. */
export function tsharkFields(file: string, fields: string[]): string[][] {
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return out
    .split('\n')
    .filter((l) => l.length)
    .map((l) => l.split('|'));
}
