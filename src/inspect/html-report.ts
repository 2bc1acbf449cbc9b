/**
 * The inspector's HTML output: one self-contained page (inline CSS, no
 * scripts, no external assets) with the anomalies linked to their frames,
 * the devices, and the timeline, each busy frame a <details> element.
 */
import { markingStyle, neutralise, renderMarked } from '../platform/safe-text.js';
import type { Inspection, TimelineEntry } from './inspector.js';
import { describeAnomaly, describeDevice, describeEvent, describeUrb, describeWalk, ms, type Style } from './text-report.js';

/** Text for HTML: escaped, and with terminal control characters shown as escapes too. */
export function escapeHtml(s: string): string {
  return neutralise(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const HTML_STYLE: Style = markingStyle(['frame', 'event', 'ok', 'bad', 'dim', 'alert']);

function renderLine(s: string): string {
  return renderMarked(s, (cls, text) => `<span class="${cls}">${escapeHtml(text)}</span>`, escapeHtml);
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
pre,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
pre{margin:.2em 0 .2em 1em;white-space:pre-wrap}
.idle{color:#888;font-style:italic;margin:.2em 0}
.ev{color:#8a5a00;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;margin:.1em 0}
details.frame{border-left:3px solid #39c;padding-left:.5em;margin:.3em 0}
details.frame.anom{border-left-color:#c33}
summary{cursor:pointer;font-weight:600;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.ok{color:#1a7f37}.bad{color:#c33}.dim{color:#999}.alert{color:#c33;font-weight:700}.frame{color:#06c}.event{color:#8a5a00}
li.anomaly{margin:.4em 0}.kind{font-weight:700;color:#c33}
`;

function entryHtml(e: TimelineEntry): string {
  switch (e.kind) {
    case 'idle':
      return `<div class="idle">… ${e.frames} idle frame${e.frames === 1 ? '' : 's'} (${e.fromFrame}..${e.toFrame}, ${escapeHtml(ms(e.fromNs))} – ${escapeHtml(ms(e.toNs))})${e.quiet ? `, ${e.quiet} routine reads` : ''} …</div>`;
    case 'event':
      return `<div class="ev">t=${escapeHtml(ms(e.event.tNs))} ${escapeHtml(describeEvent(e.event))}${e.repeat > 1 ? ` ×${e.repeat}` : ''}</div>`;
    case 'frame': {
      const f = e.frame;
      const lines = describeWalk(f, HTML_STYLE);
      if (f.irq === 1) lines.push('  IRQ asserted ↑ at end of frame');
      for (const u of e.transfers) lines.push('  ' + (u.status === 0 ? HTML_STYLE.ok : HTML_STYLE.bad)(describeUrb(u)));
      for (const a of e.anomalies) lines.push(HTML_STYLE.alert(`  !! ${a.kind}: ${a.message}`));
      const cls = e.anomalies.length ? 'frame anom' : 'frame';
      return `<details class="${cls}" id="f${f.serial}"${e.anomalies.length ? ' open' : ''}><summary>frame ${f.serial} FRNUM 0x${f.frnum.toString(16).padStart(3, '0')} t=${escapeHtml(ms(f.tNs))}${e.transfers.length ? ` — ${e.transfers.length} transfer${e.transfers.length === 1 ? '' : 's'}` : ''}</summary><pre>${lines.map(renderLine).join('\n')}</pre></details>`;
    }
  }
}

export function formatInspectionHtml(r: Inspection, name = 'trace'): string {
  const h = r.header;
  const parts: string[] = [];
  parts.push('<!DOCTYPE html>');
  parts.push('<html lang="en"><head><meta charset="utf-8">');
  parts.push(`<title>uhci-dm inspect: ${escapeHtml(name)}</title>`);
  parts.push(`<style>${CSS}</style></head><body>`);
  parts.push(`<h1>uhci-dm inspect: ${escapeHtml(name)}</h1>`);
  parts.push(
    `<p>Recorded ${escapeHtml(h.created)} by ${escapeHtml(h.model)} (${escapeHtml(h.options.variant)})${h.notes ? ` — ${escapeHtml(h.notes)}` : ''}. ${r.events} events, ${r.frames} frames, ${escapeHtml(ms(r.summary.endNs))}. Frames ${r.range.from}..${r.range.to}: ${r.stats.busyFrames} with activity, ${r.stats.idleFrames} idle, ${r.stats.transfers} transfers.</p>`,
  );
  parts.push(`<h2 id="anomalies">Anomalies (${r.anomalies.length})</h2>`);
  if (!r.anomalies.length) parts.push('<p class="ok">None found.</p>');
  else {
    parts.push('<ul>');
    for (const a of r.anomalies) {
      const details = a.details.length ? `<pre>${a.details.map(escapeHtml).join('\n')}</pre>` : '';
      parts.push(`<li class="anomaly"><span class="kind">${escapeHtml(a.kind)}</span> <a href="#f${a.frame}">frame ${a.frame}</a>: ${escapeHtml(describeAnomaly(a))}${details}</li>`);
    }
    parts.push('</ul>');
  }
  parts.push('<h2 id="devices">Devices</h2>');
  if (!r.devices.length) parts.push('<p>No device answered a transfer.</p>');
  else parts.push(`<ul>${r.devices.map((d) => `<li class="mono">${escapeHtml(describeDevice(d))}</li>`).join('')}</ul>`);
  parts.push('<h2 id="timeline">Timeline</h2>');
  for (const e of r.timeline) parts.push(entryHtml(e));
  parts.push('</body></html>');
  return parts.join('\n') + '\n';
}
