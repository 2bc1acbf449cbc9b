#!/usr/bin/env node
// Send QMP-like commands to a running `uhci-dm xen --control SOCKET` and print each reply as one line.
// Usage: node scripts/xen-lab/control.mjs SOCKET [--until-polled N | --until-address PORT] [--within S] '{"execute":"query-status"}' ...
// --until-polled N: first ask query-usb every 200 ms until N emulated HID devices report
// "polled" (the guest's driver reads their interrupt endpoint since its last port reset),
// at most S seconds (default 120); prints {"polled":n,"waitedMs":t} and then sends the commands
// (even when the wait timed out: the caller sees the count).
// --until-address PORT: the same, until the device on PORT has a USB address (the guest enumerated it);
// prints {"port":P,"address":a,"waitedMs":t}.
import { createConnection } from 'node:net';

const argv = process.argv.slice(2);
const sock = argv.shift();
let untilPolled = 0;
let untilAddress = 0;
let within = 120;
while (argv[0]?.startsWith('--')) {
  const o = argv.shift();
  if (o === '--until-polled') untilPolled = Number(argv.shift());
  else if (o === '--until-address') untilAddress = Number(argv.shift());
  else if (o === '--within') within = Number(argv.shift());
  else { console.log(JSON.stringify({ error: `unknown option ${o}` })); process.exit(2); }
}
const cmds = argv;
const c = createConnection(sock);
c.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });

let buf = '';
const waiting = [];
c.on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    waiting.shift()?.(line);
  }
});
const next = () => new Promise((resolve) => waiting.push(resolve));
const send = (cmd) => { c.write(cmd + '\n'); return next(); };

const deadline = setTimeout(() => { console.log('{"error":"timeout"}'); process.exit(2); }, (within + 20) * 1000);
await next(); // greeting
// Ask query-usb every 200 ms until done(list) says so or `within` seconds passed; prints report(list) + the wait.
const poll = async (done, report) => {
  const t0 = Date.now();
  let list = [];
  for (;;) {
    list = JSON.parse(await send('{"execute":"query-usb"}')).return ?? [];
    if (done(list) || Date.now() - t0 >= within * 1000) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  console.log(JSON.stringify({ ...report(list), waitedMs: Date.now() - t0 }));
};
const polled = (list) => list.filter((d) => d.polled === true).length;
const addressOf = (list) => list.find((d) => d.port === untilAddress)?.address ?? 0;
if (untilPolled > 0) await poll((l) => polled(l) >= untilPolled, (l) => ({ polled: polled(l) }));
if (untilAddress > 0) await poll((l) => addressOf(l) !== 0, (l) => ({ port: untilAddress, address: addressOf(l) }));
for (const cmd of cmds) console.log(await send(cmd));
clearTimeout(deadline);
c.end();
