/**
 * Text that came from outside (a trace someone handed us, a USB device's
 * name) made safe to print: every control character a terminal acts on —
 * C0 controls but newline and tab, DEL, C1 controls (U+0080..U+009F, of
 * which U+009B is CSI) and the Unicode bidirectional overrides and isolates
 * (U+202A..U+202E, U+2066..U+2069, which reorder what is shown) — is shown
 * as a visible escape (`\x1b`, `\u202e`) instead. The CLI writers and the
 * control socket's inspect answer pass everything through here on the way
 * out, so no formatter further in has to remember to.
 */

const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function visible(c: string): string {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16)}`;
}

/** `s` with every unsafe character shown as an escape (newlines and tabs kept). */
export function neutralise(s: string): string {
  return s.replace(UNSAFE, visible);
}

/** `s` as one line: unsafe characters, newlines and tabs all shown as escapes (error messages). */
export function neutraliseLine(s: string): string {
  return neutralise(s).replace(/[\n\t]/g, visible);
}

/**
 * JSON text with the unsafe characters JSON.stringify leaves raw (DEL, C1,
 * bidi controls) written as \u escapes: the same JSON value, safe on a
 * terminal. (They can only occur inside strings, where \u escapes mean them.)
 */
export function neutraliseJson(json: string): string {
  return json.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// Styled spans are marked as SPAN_START class SPAN_TEXT text SPAN_END; the
// text inside is neutralised when it is marked, so it holds none of these.
const SPAN_START = '\u0001';
const SPAN_TEXT = '\u0002';
const SPAN_END = '\u0003';
const SPAN = /\u0001([a-z]+)\u0002([^\u0001-\u0003]*)\u0003/g;

/** A style (class name → function) that marks its spans for renderMarked. */
export function markingStyle<K extends string>(classes: readonly K[]): Record<K, (s: string) => string> {
  const style = {} as Record<K, (s: string) => string>;
  for (const cls of classes) style[cls] = (s: string) => `${SPAN_START}${cls}${SPAN_TEXT}${neutralise(s)}${SPAN_END}`;
  return style;
}

/**
 * Text formatted with a markingStyle, rendered: each marked span through
 * `span(class, text)`, everything between through `text` — both given
 * neutralised text, so a formatter's output cannot smuggle a control
 * sequence past this point whatever data it quotes.
 */
export function renderMarked(s: string, span: (cls: string, text: string) => string, text: (s: string) => string): string {
  let out = '';
  let last = 0;
  SPAN.lastIndex = 0;
  for (let m = SPAN.exec(s); m; m = SPAN.exec(s)) {
    out += text(neutralise(s.slice(last, m.index))) + span(m[1]!, m[2]!);
    last = SPAN.lastIndex;
  }
  return out + text(neutralise(s.slice(last)));
}
