// The budget's own peer: uWebSockets (uWS.js, its Node binding), relaying
// pigeon-bench's traffic the way a Node app on it would. The CPU line
// is "at most the figure for the non-durable relay" measured on a reference
// day with uWebSockets; `pigeon-bench --uws` runs this under the very load it
// gives pigeond, so the two compare in the same run, on the same host.
//
// Like the bare reference relay (tools/reference_relay.h) it keeps nothing:
// no store, no fsync, no accounts (a token is its user's id). It serves only
// what the traffic scenarios use: POST /api/v1/conversations, GET /api/v1/ws,
// and on the socket `send` (answered by `ack`, and `message` to every socket
// of both members, with a per-conversation seq) and `ping`. Each client frame
// is read with JSON.parse and each frame sent is made with JSON.stringify,
// as an application on uWS.js would.
//
// Usage: node relay.mjs   (listens on 127.0.0.1, an ephemeral port; prints
// "port N" on stdout once it listens). install.mjs fetches uWS.js first.
import uws from './node_modules/uws-pack/dist/uws.mjs';

const conversations = new Map();  // id -> {a, b, seq}
const online = new Map();         // user -> [ws]

function userOf(authorization) {
  return authorization.startsWith('Bearer ') ? authorization.slice(7) : '';
}

function respond(res, status, body) {
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'application/json').end(JSON.stringify(body));
  });
}

function onSend(ws, user, f) {
  const conv = conversations.get(f.conversation_id);
  if (!conv || (conv.a !== user && conv.b !== user)) {
    ws.send(JSON.stringify({type: 'error', code: 'not_found', client_msg_id: f.client_msg_id,
                            message: 'no such conversation'}));
    return;
  }
  const seq = ++conv.seq;
  const ts = Date.now();
  ws.send(JSON.stringify({type: 'ack', client_msg_id: f.client_msg_id,
                          conversation_id: f.conversation_id, seq, ts}));
  const frame = JSON.stringify({type: 'message', conversation_id: f.conversation_id, seq,
                                sender: user, body: f.body, ts});
  // Every socket of both members, the sender's own included (as pigeond).
  for (const member of [conv.a, conv.b]) {
    for (const to of online.get(member) ?? []) {
      if (to === ws) to.send(frame);
      else to.cork(() => to.send(frame));
    }
  }
}

const app = uws.App();
app.post('/api/v1/conversations', (res, req) => {
  const user = userOf(req.getHeader('authorization'));
  let body = '';
  let aborted = false;
  res.onAborted(() => { aborted = true; });
  res.onData((chunk, last) => {
    body += Buffer.from(chunk).toString();
    if (!last || aborted) return;
    let peer = '';
    try {
      peer = JSON.parse(body).peer ?? '';
    } catch {}
    if (!user || !peer || peer === user) {
      respond(res, '400 Bad Request', {error: 'peer and token needed'});
      return;
    }
    const id = user < peer ? `${user}~${peer}` : `${peer}~${user}`;
    if (!conversations.has(id)) conversations.set(id, {a: user, b: peer, seq: 0});
    respond(res, '200 OK', {conversation_id: id});
  });
});
app.ws('/api/v1/ws', {
  compression: uws.DISABLED,
  maxPayloadLength: 256 * 1024,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  upgrade: (res, req, context) => {
    const user = userOf(req.getHeader('authorization'));
    if (!user) {
      respond(res, '401 Unauthorized', {error: 'no token'});
      return;
    }
    res.upgrade({user}, req.getHeader('sec-websocket-key'),
                req.getHeader('sec-websocket-protocol'),
                req.getHeader('sec-websocket-extensions'), context);
  },
  open: (ws) => {
    const user = ws.getUserData().user;
    const list = online.get(user);
    if (list) list.push(ws);
    else online.set(user, [ws]);
  },
  message: (ws, message, isBinary) => {
    if (isBinary) return;
    let f;
    try {
      f = JSON.parse(Buffer.from(message).toString());
    } catch {
      return;
    }
    if (f.type === 'send') onSend(ws, ws.getUserData().user, f);
    else if (f.type === 'ping') ws.send('{"type":"pong"}');
  },
  close: (ws) => {
    const user = ws.getUserData().user;
    const list = (online.get(user) ?? []).filter((w) => w !== ws);
    if (list.length) online.set(user, list);
    else online.delete(user);
  },
});
app.any('/*', (res) => {
  respond(res, '404 Not Found', {error: 'the uWS relay serves only what pigeon-bench uses'});
});
app.listen('127.0.0.1', 0, (token) => {
  if (!token) {
    console.error('uws relay: listen failed');
    process.exit(1);
  }
  process.stdout.write(`port ${uws.us_socket_local_port(token)}\n`);
});
