// Prints N port numbers (default 1), one per line, each free on 127.0.0.1 for
// both TCP and UDP at the time of the check: the OS picks a TCP port, and the
// port is kept only if UDP can bind it too. All are held until every port is
// chosen, so the N are distinct.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

const n = Number(process.argv[2] || 1);
if (!Number.isInteger(n) || n < 1 || n > 20) {
  console.error('usage: node free-ports.mjs [N<=20]');
  process.exit(2);
}

const held = [];
const ports = [];
for (let tries = 0; ports.length < n && tries < 200; tries++) {
  const tcp = createServer();
  await new Promise((res, rej) => tcp.once('error', rej).listen(0, '127.0.0.1', res));
  held.push(() => tcp.close());
  const port = tcp.address().port;
  const udp = createSocket('udp4');
  const ok = await new Promise((res) => {
    udp.once('error', () => res(false));
    udp.bind(port, '127.0.0.1', () => res(true));
  });
  if (ok) {
    held.push(() => udp.close());
    ports.push(port);
  }
}
for (const release of held) release();
if (ports.length < n) {
  console.error('could not find free ports');
  process.exit(1);
}
console.log(ports.join('\n'));
