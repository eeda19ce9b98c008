// The Socket.IO side of `ss-bench rpc`: the same work as the ssrun side
// (an acknowledged `square`, a `broadcast` to everyone connected, and a room
// for the fan-out to a channel), on a plain
// HTTP server, WebSocket transport only, no per-message compression.
//
// Usage: node server.js [PORT]   (or PORT in the environment; 0 picks a free one)
// Prints the port it listens on, alone on one line, once listening.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
});

io.on('connection', (s) => {
  s.on('square', (n, ack) => ack(n * n));
  s.on('broadcast', (data, ack) => {
    io.emit('tick', data);
    if (ack) ack(1);
  });
  // `ss-bench rpc --channel`: each idle client joins the room `bench`, and the fan-out goes to it.
  s.on('join', (data, ack) => {
    s.join('bench');
    if (ack) ack(1);
  });
  s.on('channel', (data, ack) => {
    io.to('bench').emit('tick', data);
    if (ack) ack(1);
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(String(httpServer.address().port));
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
