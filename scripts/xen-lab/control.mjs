#!/usr/bin/env node
// Send QMP-like commands to a running `uhci-dm xen --control SOCKET` and print each reply as one line.
// Usage: node scripts/xen-lab/control.mjs SOCKET '{"execute":"query-status"}' ...
import { createConnection } from 'node:net';

const [sock, ...cmds] = process.argv.slice(2);
const c = createConnection(sock);
let buf = '';
let greeted = false;
const timer = setTimeout(() => { console.log('{"error":"timeout"}'); process.exit(2); }, 20000);
c.on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (!greeted) {
      greeted = true;
      for (const cmd of cmds) c.write(cmd + '\n');
      continue;
    }
    console.log(line);
    if (--cmds.length <= 0) { clearTimeout(timer); c.end(); }
  }
});
c.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
