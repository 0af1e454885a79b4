// The peer of bench/fanout: a Node `ws` broadcast server doing the same fan-out as silklive's
// hub: every text message a client sends is sent to every other client.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const c of wss.clients) {
      if (c !== ws && c.readyState === 1) c.send(data, { binary: isBinary });
    }
  });
});
wss.on('listening', () => console.log(`peer listening on ${port}`));
