// The browser library (client/socket.js) against a scripted server: the page's
// scripts run in a `vm` context, in the order a client bundle holds them
// (modules.js, tmpl.js, socket.js, then the app's modules and `__ss.boot`),
// with a fake WebSocket, timers that only move when a test moves them, a
// Math.random that returns what the test says, and a console that records.
//
// Run with: node --test tests/js/socket.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const ROOT = path.resolve(__dirname, '..', '..');
const SCRIPTS = ['client/modules.js', 'client/tmpl.js', 'client/socket.js'].map((rel) => ({
  rel,
  text: fs.readFileSync(path.join(ROOT, rel), 'utf8'),
}));
// What socket.js reads (see QUEUE_LIMIT and MAX_DELAY there).
const QUEUE_LIMIT = 1000;
const BASE_DELAY = 250;
const MAX_DELAY = 30000;
const API = { app: { square: 1, echo: 1 }, admin: { users: { list: 1 } } };

// Timers that run only when `advance` or `runNext` is called.
class Clock {
  constructor() {
    this.now = 0;
    this.lastId = 0;
    this.timers = new Map();
  }

  add(fn, ms, repeat) {
    const id = ++this.lastId;
    // As browsers do, a delay that is not a number counts as 0.
    const delay = Math.max(0, Number(ms) || 0);
    this.timers.set(id, { id, fn, delay, at: this.now + delay, repeat });
    return id;
  }

  next(limit) {
    let first = null;
    for (const timer of this.timers.values()) {
      if (timer.at > limit) continue;
      if (!first || timer.at < first.at || (timer.at === first.at && timer.id < first.id)) first = timer;
    }
    return first;
  }

  fire(timer) {
    this.now = Math.max(this.now, timer.at);
    if (timer.repeat) timer.at += Math.max(1, timer.delay);
    else this.timers.delete(timer.id);
    timer.fn();
  }

  // Moves time on by `ms`, running every timer that falls due, in order.
  advance(ms) {
    const end = this.now + ms;
    for (let timer = this.next(end); timer; timer = this.next(end)) this.fire(timer);
    this.now = end;
  }

  // Runs the earliest timer, whenever it is due; false when there is none.
  runNext() {
    const timer = this.next(Infinity);
    if (!timer) return false;
    this.fire(timer);
    return true;
  }

  globals() {
    return {
      setTimeout: (fn, ms) => this.add(fn, ms, false),
      clearTimeout: (id) => this.timers.delete(id),
      setInterval: (fn, ms) => this.add(fn, ms, true),
      clearInterval: (id) => this.timers.delete(id),
    };
  }
}

// A page that loaded the client bundle, and the server's side of its sockets.
// options.refuse: how many `new WebSocket` calls throw before one succeeds.
// options.random: the values Math.random returns, in turn (then 0.5).
// options.protocol: the page's location.protocol.
// options.init: the source of the app's `init` function.
function openPage(options = {}) {
  const clock = new Clock();
  const page = {
    clock,
    sockets: [],
    lines: [],
    // What went to the browser's own error reporting (reportError).
    reported: [],
    events: [],
    inits: [],
    reloads: 0,
    refuse: options.refuse || 0,
    randoms: (options.random || []).slice(),
  };

  class FakeWebSocket {
    constructor(url) {
      if (page.refuse > 0) {
        page.refuse -= 1;
        const error = new Error("Refused to connect to '" + url + "' because it violates the content security policy");
        error.name = 'SecurityError';
        throw error;
      }
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onmessage = null;
      this.onclose = null;
      page.sockets.push(this);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: the socket is not open');
      this.sent.push(JSON.parse(text));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
  }

  // Console arguments as plain JSON values, so they compare across realms.
  const record = (kind) => (...parts) => {
    page.lines.push([kind, ...parts.map((part) => (part === undefined ? null : JSON.parse(JSON.stringify(part))))]);
  };
  const sandbox = {
    console: { log: record('log'), error: record('error'), warn: record('warn'), info: record('info') },
    reportError: (error) => page.reported.push(error && error.message),
    WebSocket: FakeWebSocket,
    location: {
      protocol: options.protocol || 'http:',
      host: 'app.test:3000',
      reload() {
        page.reloads += 1;
      },
    },
    inits: page.inits,
    ...clock.globals(),
  };
  const context = vm.createContext(sandbox);
  vm.runInContext('Math', context).random = () => (page.randoms.length ? page.randoms.shift() : 0.5);
  for (const script of SCRIPTS) vm.runInContext(script.text, context, { filename: script.rel });
  // The app's one module, as ssbuild wraps it, and the bundle's last line.
  vm.runInContext(
    `__ss.d(0, {}, function (require, module, exports) {
       exports.init = ${options.init || `function () {
         inits.push({ connected: SS.socket.connected, square: typeof SS.server.app.square });
       }`};
     });
     __ss.boot({ client: { app: 0 } }, [], ['client/app.js']);`,
    context,
    { filename: 'app.bundle.js' },
  );
  page.SS = sandbox.SS;
  for (const name of ['connect', 'disconnect', 'reconnecting', 'reconnect', 'reconnect_failed']) {
    page.SS.socket.on(name, (...args) => page.events.push([name, ...args]));
  }

  Object.defineProperty(page, 'socket', { get: () => page.sockets[page.sockets.length - 1] });
  Object.assign(page, {
    // The server sends `message` on the current socket.
    receive(message) {
      page.socket.onmessage({ data: JSON.stringify(message) });
    },
    init(client = { log_level: 2, heartbeat_interval: 30 }, api = API) {
      page.socket.readyState = 1;
      page.receive({
        type: 'init',
        v: 1,
        env: 'test',
        session: { user_id: null, created_at: 1764115200000 },
        client,
        api,
      });
    },
    // The connection drops (the browser's close event).
    drop(code = 1006, reason = '') {
      const socket = page.socket;
      socket.readyState = 3;
      if (socket.onclose) socket.onclose({ code, reason, wasClean: code !== 1006 });
    },
    calls(socket = page.socket) {
      return socket.sent.filter((m) => m.type === 'call');
    },
    reply(id, result) {
      page.receive({ type: 'reply', id, result });
    },
    // Runs timers until the page opens a new socket; returns how long that took.
    reconnect() {
      const count = page.sockets.length;
      const start = clock.now;
      while (page.sockets.length === count) {
        assert.ok(clock.runNext(), 'no timer left, and no new socket');
        assert.ok(clock.now - start <= MAX_DELAY, 'no new socket within ' + MAX_DELAY + ' ms');
      }
      return clock.now - start;
    },
    // The `reconnecting` events: [attempt, delay in ms].
    reconnecting() {
      return page.events.filter((e) => e[0] === 'reconnecting').map((e) => [e[1], e[2]]);
    },
  });
  return page;
}

// Whether a call's outcome came within this turn: a Promise that settles later is still pending.
function outcome(promise) {
  const state = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error) => Object.assign(state, { settled: true, error }),
  );
  return state;
}
const turn = () => new Promise((resolve) => setImmediate(resolve));

test('the page connects to /_ss/ws?v=1 on its own host, wss: under https:', () => {
  assert.equal(openPage().socket.url, 'ws://app.test:3000/_ss/ws?v=1');
  assert.equal(openPage({ protocol: 'https:' }).socket.url, 'wss://app.test:3000/_ss/ws?v=1');
  assert.equal(openPage({ protocol: 'file:' }).sockets.length, 0, 'no socket outside http(s)');
});

test('calls made while disconnected queue up to the bound, then fail with queue_full', async () => {
  const page = openPage();
  page.init();
  const first = page.socket;
  const inFlight = page.SS.server.app.echo('in flight');
  assert.deepEqual(page.calls(first), [{ type: 'call', id: 1, method: 'app.echo', args: ['in flight'] }]);
  page.drop(1006);
  assert.equal(page.SS.socket.connected, false);
  await assert.rejects(inFlight, (error) => error.code === 'disconnected');

  const queued = [];
  for (let i = 0; i < QUEUE_LIMIT; i++) queued.push(outcome(page.SS.server.app.echo(i)));
  await turn();
  assert.ok(queued.every((q) => !q.settled), 'every queued call waits');
  assert.equal(page.calls(first).length, 1, 'nothing more went out on the closed socket');

  // One more: with a callback, the callback gets the Error, at once.
  let given = null;
  const returned = page.SS.server.app.echo('over', (value) => {
    given = value;
  });
  assert.equal(returned, undefined, 'a call with a callback returns nothing');
  assert.ok(given, 'the callback ran within the call');
  assert.equal(given.code, 'queue_full');
  assert.match(given.message, /^app\.echo: 1000 calls are already waiting for the connection$/);

  // Without a callback, the Promise rejects with the same code.
  await assert.rejects(page.SS.server.app.square(3), (error) => {
    assert.equal(error.code, 'queue_full');
    assert.match(error.message, /^app\.square: 1000 calls/);
    return true;
  });
  const errors = page.lines.filter((l) => l[0] === 'error' && /queue_full|already waiting/.test(l.join(' ')));
  assert.equal(errors.length, 2, 'each refused call logs one error at level 2');

  // Once the session is ready again, the queue goes out in order, and the
  // refused calls do not.
  page.reconnect();
  assert.deepEqual(page.calls(), [], 'nothing goes out before init');
  page.init();
  const sent = page.calls();
  assert.equal(sent.length, QUEUE_LIMIT);
  sent.forEach((message, i) => {
    assert.deepEqual(message, { type: 'call', id: i + 2, method: 'app.echo', args: [i] });
  });
  for (const message of sent) page.reply(message.id, message.args);
  await turn();
  queued.forEach((q, i) => assert.deepEqual(q.value && [...q.value], [i]));

  // The queue is empty again: a call waits instead of failing.
  page.drop(1006);
  const again = outcome(page.SS.server.app.echo('again'));
  await turn();
  assert.equal(again.settled, false);
});

test('a call in flight when the connection drops fails with disconnected', async () => {
  const page = openPage();
  page.init();
  const pending = page.SS.server.app.square(4);
  page.drop(1001, 'restarting');
  await assert.rejects(pending, (error) => error.code === 'disconnected' && /may or may not have run/.test(error.message));
});

// The delay before reconnection attempt n+1 (n failed before it): half the
// ceiling min(MAX_DELAY, BASE_DELAY * 2^n), plus up to that half again.
function ceiling(n) {
  return Math.min(MAX_DELAY, BASE_DELAY * 2 ** n);
}

test('reconnection delays stay within equal jitter of a doubling, capped ceiling', () => {
  for (const random of [0, 0.999999, 0.5]) {
    const page = openPage({ random: Array(12).fill(random) });
    page.init();
    const waited = [];
    for (let n = 0; n < 12; n++) {
      page.drop(1006);
      waited.push(page.reconnect());
    }
    const announced = page.reconnecting();
    assert.deepEqual(announced.map((r) => r[0]), [...Array(12).keys()].map((n) => n + 1), 'attempts count up');
    waited.forEach((ms, n) => {
      const high = ceiling(n);
      assert.ok(ms >= high / 2 && ms <= high, `attempt ${n + 1} waited ${ms} ms, outside [${high / 2}, ${high}]`);
      assert.equal(announced[n][1], Math.round(high / 2 + (random * high) / 2), 'the event names the delay');
      assert.ok(Math.abs(ms - (high / 2 + (random * high) / 2)) < 1e-6, 'the socket opens when the delay ends');
    });
    // Grows until the cap, whatever the jitter, and stays capped.
    for (let n = 1; n < 12; n++) {
      if (ceiling(n) < MAX_DELAY) assert.ok(waited[n] > waited[n - 1], `attempt ${n + 1} waited no longer than ${n}`);
      else assert.ok(waited[n] >= MAX_DELAY / 2 && waited[n] <= MAX_DELAY);
    }
    assert.equal(ceiling(11), MAX_DELAY);
  }
});

test('the back-off holds across jitter drawn from a seeded generator', () => {
  let seed = 20240611;
  const draws = Array.from({ length: 40 }, () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  });
  const page = openPage({ random: draws.slice() });
  for (let n = 0; n < 40; n++) {
    // Before the first init too: a socket that never opened retries as well.
    page.drop(1006);
    const ms = page.reconnect();
    const high = ceiling(n);
    assert.ok(Math.abs(ms - (high / 2 + (draws[n] * high) / 2)) < 1e-6, `attempt ${n + 1}: ${ms} ms`);
  }
});

test('a session that stays up 5 s resets the back-off', () => {
  const page = openPage();
  for (let n = 0; n < 5; n++) {
    page.drop(1006);
    page.reconnect();
  }
  assert.deepEqual(page.reconnecting().map((r) => r[0]), [1, 2, 3, 4, 5]);
  // A session dropped as soon as it is ready does not reset it.
  page.init();
  page.drop(1006);
  page.reconnect();
  assert.equal(page.reconnecting().at(-1)[0], 6);
  // One that stayed up 5 s does.
  page.init();
  page.clock.advance(5000);
  page.drop(1006);
  const ms = page.reconnect();
  assert.deepEqual(page.reconnecting().at(-1), [1, 188]);
  assert.ok(ms >= BASE_DELAY / 2 && ms < BASE_DELAY, `${ms} ms after a session was ready`);
  // A connection that opens but closes before init does not reset it.
  page.socket.readyState = 1;
  page.drop(1006);
  page.reconnect();
  assert.equal(page.reconnecting().at(-1)[0], 2);
});

test('a WebSocket constructor that throws schedules the next attempt, with the back-off going on', async () => {
  const page = openPage({ refuse: 4 });
  assert.equal(page.sockets.length, 0, 'the first attempt was refused');
  // As a close event would, the failure comes after the page's scripts ran,
  // so their handlers hear of it.
  assert.deepEqual(page.reconnecting(), []);
  page.clock.advance(0);
  assert.deepEqual(page.reconnecting(), [[1, 188]], 'the refusal counts as a dropped connection');
  const waited = [page.reconnect()];
  assert.equal(page.reconnecting().length, 4, 'every refused attempt schedules another');
  assert.deepEqual(page.reconnecting().map((r) => r[0]), [1, 2, 3, 4]);
  assert.deepEqual(page.reconnecting().map((r) => r[1]), [188, 375, 750, 1500]);
  assert.equal(waited[0], 187.5 + 375 + 750 + 1500, 'the attempts waited their delays in turn');
  assert.ok(!page.events.some((e) => e[0] === 'disconnect'), 'no disconnect: no session was ever ready');
  assert.ok(!page.lines.some((l) => l[0] === 'error'), 'no handler error was logged');

  // The socket that finally opens serves the session as any other.
  page.init();
  assert.equal(page.SS.socket.connected, true);
  assert.equal(page.inits.length, 1);
  const answer = page.SS.server.app.square(6);
  page.reply(page.calls()[0].id, 36);
  assert.equal(await answer, 36);

  // Refused again after a drop, once the session stayed up: the attempts after it go on from 1.
  page.clock.advance(5000);
  page.refuse = 2;
  page.drop(1006);
  page.reconnect();
  assert.deepEqual(page.reconnecting().slice(4).map((r) => r[0]), [1, 2, 3]);
});

test('SS.events.on takes several handlers; SS.events.off removes one', () => {
  const page = openPage();
  page.init();
  const seen = [];
  const first = (data, channel) => seen.push(['first', data, channel]);
  const second = (data, channel) => seen.push(['second', data, channel]);
  page.SS.events.on('price', first);
  page.SS.events.on('price', second);
  page.SS.events.on('other', (data) => seen.push(['other', data]));

  page.receive({ type: 'event', event: 'price', data: 101.5, channel: 'EURUSD' });
  page.receive({ type: 'event', event: 'price', data: { text: 'hi' } });
  assert.deepEqual(JSON.parse(JSON.stringify(seen)), [
    ['first', 101.5, 'EURUSD'],
    ['second', 101.5, 'EURUSD'],
    ['first', { text: 'hi' }, null],
    ['second', { text: 'hi' }, null],
  ]);
  assert.equal(seen[2][2], undefined, 'no channel: the handler gets undefined');

  seen.length = 0;
  page.SS.events.off('price', first);
  page.receive({ type: 'event', event: 'price', data: 102 });
  page.receive({ type: 'event', event: 'other', data: 'x' });
  assert.deepEqual(seen, [['second', 102, undefined], ['other', 'x']]);

  // A handler that throws is logged and does not stop the next one.
  seen.length = 0;
  page.SS.events.on('price', () => {
    throw new Error('boom');
  });
  page.SS.events.on('price', (data) => seen.push(['last', data]));
  page.receive({ type: 'event', event: 'price', data: 103 });
  assert.deepEqual(seen, [['second', 103, undefined], ['last', 103]]);
  assert.ok(page.lines.some((l) => l[0] === 'error' && /a handler of "price" threw/.test(l[1])));
});

test('SS.socket events fire when the connection comes, goes and comes back', () => {
  const page = openPage();
  assert.deepEqual(page.events, []);
  page.init();
  assert.deepEqual(page.events, [['connect']], 'the first init: connect, not reconnect');
  assert.equal(page.SS.socket.connected, true);

  page.drop(1001, 'restarting');
  assert.deepEqual(page.events.slice(1), [['disconnect', 1001, 'restarting'], ['reconnecting', 1, 188]]);
  assert.equal(page.SS.socket.connected, false);

  // An attempt that fails before init: reconnecting again, no second disconnect.
  page.reconnect();
  page.drop(1006);
  assert.deepEqual(page.events.slice(3), [['reconnecting', 2, 375]]);

  page.reconnect();
  page.init();
  assert.deepEqual(page.events.slice(4), [['connect'], ['reconnect']]);

  // SS.socket.off stops a handler.
  const seen = [];
  const handler = (code) => seen.push(code);
  page.SS.socket.on('disconnect', handler);
  page.drop(4429, 'too slow');
  page.SS.socket.off('disconnect', handler);
  page.reconnect();
  page.init();
  page.drop(1000);
  assert.deepEqual(seen, [4429]);
});

test('an unanswered heartbeat ends the connection with 4408; an answered one does not', () => {
  const page = openPage();
  page.init({ log_level: 2, heartbeat_interval: 30 });
  const first = page.socket;
  page.clock.advance(30000);
  assert.deepEqual(first.sent, [{ type: 'hb' }]);
  page.receive({ type: 'hb' });
  page.clock.advance(30000);
  assert.deepEqual(first.sent, [{ type: 'hb' }, { type: 'hb' }]);
  assert.equal(page.SS.socket.connected, true, 'answered: still connected');
  assert.ok(!page.events.some((e) => e[0] === 'disconnect'));

  page.clock.advance(30000);
  assert.deepEqual(page.events.slice(1, 3), [['disconnect', 4408, 'no answer to a heartbeat'], ['reconnecting', 1, 188]]);
  assert.ok(first.closedWith, 'the dead socket was closed');
  assert.equal(first.onclose, null, 'and its own close event is not counted again');
  assert.equal(page.reconnect(), 187.5);
});

test('settings the server leaves out, or sends as something else than a number, keep their defaults', () => {
  const page = openPage();
  page.init({ log_level: 2 });
  const first = page.socket;
  page.clock.advance(29999);
  assert.deepEqual(first.sent, [], 'no heartbeat before the default 30 s');
  page.clock.advance(1);
  assert.deepEqual(first.sent, [{ type: 'hb' }]);
  page.receive({ type: 'hb' });

  const other = openPage();
  other.init({ heartbeat_interval: 'soon' });
  other.clock.advance(29999);
  assert.deepEqual(other.socket.sent, []);
  other.lines.length = 0;
  other.SS.server.app.square(5);
  other.reply(1, 25);
  assert.ok(other.lines.some((line) => line.includes('-> app.square')), 'the default log level 2 holds: ' + other.lines);
});

test('a server that does not speak the protocol stops reconnection for good', async () => {
  const page = openPage();
  page.init();
  page.drop(1000);
  page.reconnect();
  page.SS.server.app.square(2).catch(() => {});
  const queued = page.SS.server.app.square(3);
  page.drop(4001, 'protocol 2 only');
  assert.deepEqual(page.events.at(-1), ['reconnect_failed', 'protocol 2 only']);
  await assert.rejects(queued, (error) => error.code === 'disconnected');
  await assert.rejects(page.SS.server.app.square(4), (error) => error.code === 'disconnected');
  const count = page.sockets.length;
  page.clock.advance(10 * MAX_DELAY);
  assert.equal(page.sockets.length, count, 'no further attempt');
});

test('SS.client.app.init() runs once, however many times the session becomes ready', () => {
  const page = openPage();
  assert.deepEqual(page.inits, [], 'not before the first init');
  page.init();
  assert.deepEqual(JSON.parse(JSON.stringify(page.inits)), [{ connected: true, square: 'function' }], 'with the session ready and SS.server built');
  for (let i = 0; i < 3; i++) {
    page.drop(1001);
    page.reconnect();
    page.init();
  }
  assert.equal(page.events.filter((e) => e[0] === 'connect').length, 4);
  assert.equal(page.inits.length, 1);
});

// One call with a callback, one without, one failing call and one event, at `level`.
async function logsAt(level) {
  const page = openPage();
  page.init({ log_level: level, heartbeat_interval: 30 });
  page.lines.length = 0;
  let viaCallback;
  page.SS.server.app.square(5, (value) => {
    viaCallback = value;
  });
  page.reply(1, 25);
  assert.equal(viaCallback, 25);
  const promised = page.SS.server.app.square(6);
  page.reply(2, 36);
  assert.equal(await promised, 36);
  page.receive({ type: 'event', event: 'news', data: { text: 'hi' } });
  const failing = page.SS.server.app.echo('x');
  page.receive({ type: 'reply', id: 3, error: { code: 'failed', message: 'the disk is full' } });
  await assert.rejects(failing, (error) => error.code === 'failed');
  return page.lines;
}

test('log level 0 prints nothing', async () => {
  assert.deepEqual(await logsAt(0), []);
});

test('log level 1 prints errors only', async () => {
  assert.deepEqual(await logsAt(1), [['error', 'SocketStream: app.echo failed:', 'the disk is full']]);
});

test('log level 2 prints -> method on replies and => event on events', async () => {
  assert.deepEqual(await logsAt(2), [
    ['log', '-> app.square'],
    // A call without a callback (as typed in the browser console) also shows its result.
    ['log', '-> app.square', 36],
    ['log', '=> news'],
    ['error', 'SocketStream: app.echo failed:', 'the disk is full'],
  ]);
});

test('log level 3 adds the params', async () => {
  assert.deepEqual(await logsAt(3), [
    ['log', '-> app.square', [5], 25],
    ['log', '-> app.square', [6], 36],
    ['log', '=> news', { text: 'hi' }],
    ['error', 'SocketStream: app.echo failed:', 'the disk is full'],
  ]);
});

test('log level 4 adds outgoing calls', async () => {
  assert.deepEqual(await logsAt(4), [
    ['log', '<- app.square', [5]],
    ['log', '-> app.square', [5], 25],
    ['log', '<- app.square', [6]],
    ['log', '-> app.square', [6], 36],
    ['log', '=> news', { text: 'hi' }],
    ['log', '<- app.echo', ['x']],
    ['error', 'SocketStream: app.echo failed:', 'the disk is full'],
  ]);
});

test('a call with {silent: true} prints nothing at any level', async () => {
  for (const level of [0, 1, 2, 3, 4]) {
    const page = openPage();
    page.init({ log_level: level, heartbeat_interval: 30 });
    page.lines.length = 0;
    const silent = page.SS.server.app.square.with({ silent: true });

    const ok = silent(7);
    assert.deepEqual(page.calls().at(-1), { type: 'call', id: 1, method: 'app.square', args: [7], silent: true });
    page.reply(1, 49);
    assert.equal(await ok, 49);

    let given;
    silent('x', (value) => {
      given = value;
    });
    page.receive({ type: 'reply', id: 2, error: { code: 'bad_args', message: 'not a number' } });
    assert.equal(given.code, 'bad_args');

    const dropped = silent(8);
    page.drop(1006);
    await assert.rejects(dropped, (error) => error.code === 'disconnected');
    assert.deepEqual(page.lines, [], `level ${level}`);

    // The same calls without the option print at this level (so the check above can fail).
    if (level >= 2) {
      page.reconnect();
      page.init({ log_level: level, heartbeat_interval: 30 });
      page.SS.server.app.square(7);
      page.reply(page.calls().at(-1).id, 49);
      assert.ok(page.lines.length > 0, `level ${level} prints a call that is not silent`);
    }
  }
});

test('a per-call timeout fails a queued call and frees its place', async () => {
  const page = openPage();
  page.init();
  page.drop(1006);
  const late = page.SS.server.app.square.with({ timeout: 100 })(9);
  page.clock.advance(100);
  await assert.rejects(late, (error) => error.code === 'timeout');
  page.reconnect();
  page.init();
  assert.deepEqual(page.calls(), [], 'the timed-out call is not sent');
});

test('a server going away (1001) after a session was ready starts the back-off over', () => {
  const page = openPage();
  page.init();
  // In development each new build closes the sockets with 1001: however
  // often that comes, the page is back within the first delay.
  for (let n = 0; n < 6; n++) {
    page.drop(1001, 'a new build');
    const ms = page.reconnect();
    assert.ok(ms >= BASE_DELAY / 2 && ms < BASE_DELAY, `${ms} ms after restart ${n + 1}`);
    page.init();
  }
  assert.deepEqual(page.reconnecting().map((r) => r[0]), [1, 1, 1, 1, 1, 1]);
  // A server that is not back: the attempts after the first grow as ever.
  page.drop(1001, 'stopping');
  page.reconnect();
  page.drop(1006);
  page.reconnect();
  page.drop(1001);
  page.reconnect();
  assert.deepEqual(page.reconnecting().slice(6).map((r) => r[0]), [1, 2, 3]);
  // Other codes keep the back-off of a session that did not stay up.
  page.init();
  page.drop(1006);
  page.reconnect();
  assert.equal(page.reconnecting().at(-1)[0], 4);
});

test('arguments that cannot be sent as JSON fail their own call, not the queue', async () => {
  const page = openPage();
  page.init();
  page.drop(1006);
  // Offline: the call is refused at once, and the queue around it goes out.
  const before = page.SS.server.app.square(2);
  await assert.rejects(page.SS.server.app.echo(1n), (error) => {
    assert.equal(error.code, 'bad_args');
    assert.match(error.message, /^app\.echo: its arguments cannot be sent as JSON \(.*BigInt/);
    return true;
  });
  const after = page.SS.server.app.square(3);
  page.reconnect();
  page.init();
  assert.deepEqual(page.calls().map((m) => [m.id, m.args]), [[1, [2]], [2, [3]]]);
  assert.deepEqual(page.events.at(-1), ['reconnect'], 'the session is ready again');
  page.reply(1, 4);
  page.reply(2, 9);
  assert.deepEqual([await before, await after], [4, 9]);

  // Online, with a callback: the callback gets the Error, and nothing is left in flight.
  const cycle = {};
  cycle.self = cycle;
  let given = null;
  page.SS.server.app.echo(cycle, (value) => {
    given = value;
  });
  assert.equal(given && given.code, 'bad_args');
  assert.equal(page.calls().length, 2, 'nothing went out');
  page.lines.length = 0;
  page.drop(1006);
  assert.deepEqual(page.lines, [], 'no call was in flight to fail');
  // Arguments are taken as they are when the call is made.
  const list = [1];
  const queued = page.SS.server.app.echo(list);
  list.push(2);
  page.reconnect();
  page.init();
  assert.deepEqual(page.calls().at(-1).args, [[1]]);
  page.reply(page.calls().at(-1).id, [1]);
  await queued;
});

test('events may be named like the properties of an object', () => {
  const page = openPage();
  page.init();
  const seen = [];
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    page.SS.events.on(name, (data) => seen.push([name, data]));
  }
  for (const name of ['toString', '__proto__', 'constructor', 'valueOf', 'hasOwnProperty']) {
    page.receive({ type: 'event', event: name, data: 1 });
  }
  page.SS.events.off('constructor');
  page.receive({ type: 'event', event: 'constructor', data: 2 });
  assert.deepEqual(seen, [['toString', 1], ['__proto__', 1], ['constructor', 1], ['hasOwnProperty', 1]]);
  assert.ok(!page.lines.some((l) => l[0] === 'error'), JSON.stringify(page.lines));
});

test('an async SS.client.app.init() that rejects is logged', async () => {
  const page = openPage({ init: "async function () { throw new Error('no data yet'); }" });
  page.init();
  await turn();
  const logged = page.lines.filter((l) => l[0] === 'error');
  assert.equal(logged.length, 1, JSON.stringify(page.lines));
  assert.match(logged[0][1], /SS\.client\.app\.init\(\) failed/);
});

test('with the log off (production), what app code throws goes to the browser, not nowhere', async () => {
  const page = openPage({ init: "function () { throw new Error('sync init bug'); }" });
  page.SS.events.on('tick', () => {
    throw new Error('handler bug');
  });
  page.init({ log_level: 0, heartbeat_interval: 30 });
  page.SS.server.app.square(3, () => {
    throw new Error('callback bug');
  });
  page.reply(page.calls()[0].id, 9);
  page.receive({ type: 'event', event: 'tick', data: 1 });
  assert.deepEqual(page.reported, ['sync init bug', 'callback bug', 'handler bug']);
  assert.deepEqual(page.lines, [], 'the log stays off');
  // An async init that rejects takes the same way.
  const later = openPage({ init: "async function () { throw new Error('no data yet'); }" });
  later.init({ log_level: 0, heartbeat_interval: 30 });
  await turn();
  assert.deepEqual(later.reported, ['no data yet']);
  // With the log on, each is logged with what threw it, and not reported twice.
  const dev = openPage({ init: "function () { throw new Error('sync init bug'); }" });
  dev.init();
  assert.deepEqual(dev.reported, []);
  assert.match(dev.lines.find((l) => l[0] === 'error')[1], /SS\.client\.app\.init\(\) threw/);
});

test("a new build's API tree replaces the stubs: actions it no longer lists go, app code's own stay", async () => {
  const page = openPage();
  page.init();
  const { server } = page.SS;
  server.mine = { helper: () => 'kept' };
  // Things app code hid on branches the library made keep those branches.
  Object.defineProperty(server.app, 'hidden', { value: 1, enumerable: false, configurable: true });
  server.admin.users[Symbol.for('mark')] = 1;
  const held = server.app.square;
  page.drop(1001);
  page.reconnect();
  // app.echo and admin.users.list are gone, app.square became a branch, and reports is new.
  page.init(undefined, { app: { square: { of: 1 } }, reports: { daily: 1 } });
  assert.deepEqual(Object.keys(server).sort(), ['admin', 'app', 'mine', 'reports']);
  assert.deepEqual(Object.keys(server.app), ['square']);
  assert.equal(server.app.hidden, 1);
  assert.deepEqual(Object.keys(server.admin.users), []);
  assert.equal(server.admin.users[Symbol.for('mark')], 1);
  assert.equal(typeof server.app.square.of, 'function');
  assert.equal(typeof server.reports.daily, 'function');
  assert.equal(server.mine.helper(), 'kept');
  // A stub the app held on to still sends its call; the server answers not_found.
  const answer = outcome(held(2));
  const sent = page.calls().pop();
  assert.equal(sent.method, 'app.square');
  page.receive({ type: 'reply', id: sent.id, error: { code: 'not_found', message: 'no action app.square' } });
  await turn();
  assert.equal(answer.error.code, 'not_found');
  // And back: the branch becomes an action again.
  page.drop(1001);
  page.reconnect();
  page.init(undefined, API);
  assert.deepEqual(Object.keys(server).sort(), ['admin', 'app', 'mine']);
  assert.equal(typeof server.app.square, 'function');
  assert.equal(typeof server.admin.users.list, 'function');
});

test('a module that fails to load is reported with the module that threw', () => {
  const lines = [];
  const context = vm.createContext({
    console: { error: (...parts) => lines.push(parts.map((p) => (p && typeof p === 'object' ? p.message : p))) },
  });
  vm.runInContext(SCRIPTS[0].text, context, { filename: SCRIPTS[0].rel });
  vm.runInContext(
    `__ss.d(0, { './helper': 1 }, function (require) { require('./helper'); });
     __ss.d(1, {}, function () { throw 'the settings are missing'; });
     __ss.d(2, { './optional': 3 }, function (require) {
       try { require('./optional'); } catch (e) {}
       throw new Error('after the optional part');
     });
     __ss.d(3, {}, function () { throw new Error('not installed'); });
     __ss.d(4, {}, function (require, module) { module.exports = 'fine'; });
     // Two files that throw the same value: the second is named.
     __ss.d(5, { './a': 6, './b': 7 }, function (require) {
       try { require('./a'); } catch (e) {}
       require('./b');
     });
     __ss.d(6, {}, function () { throw 'not configured'; });
     __ss.d(7, {}, function () { throw 'not configured'; });
     __ss.d(8, {}, function () { throw NaN; });
     var failures = __ss.boot({ client: { app: 0, other: 2, fine: 4, both: 5, nan: 8 } }, [0, 2, 4, 5, 8, 9],
       ['client/app.js', 'client/helper.js', 'client/other.js', 'client/optional.js', 'client/fine.js',
        'client/both.js', 'client/a.js', 'client/b.js', 'client/nan.js']);`,
    context,
    { filename: 'app.bundle.js' },
  );
  assert.deepEqual(lines[0], [
    'SocketStream: client/app.js failed to load (thrown by client/helper.js):',
    'the settings are missing',
  ]);
  // A failure caught inside the module is not the one reported.
  assert.deepEqual(lines[1], ['SocketStream: client/other.js failed to load:', 'after the optional part']);
  assert.deepEqual(lines[2], ['SocketStream: client/both.js failed to load (thrown by client/b.js):', 'not configured']);
  assert.equal(lines[3][0], 'SocketStream: client/nan.js failed to load:');
  // Not thrown by a module's code: no module is named.
  assert.deepEqual(lines[4], ['SocketStream: module #9 failed to load:', 'SocketStream: module #9 is not in this bundle']);
  assert.equal(lines.length, 5);
  const failures = vm.runInContext('failures', context);
  const failedIn = vm.runInContext('__ss.failedIn', context);
  assert.equal(failedIn('the settings are missing'), null, 'only the last failure is kept');
  assert.equal(failedIn(failures[4]), null);
  vm.runInContext('try { __ss.load(8); } catch (e) {}', context);
  assert.equal(failedIn(NaN), 'client/nan.js');
  assert.equal(vm.runInContext('SS.client.fine', context), 'fine');
});

test('a call too big for the server to read fails alone and unsent', async () => {
  const page = openPage();
  // {"type":"call","id":N,"method":"app.echo","args":[...]} is 52 bytes around the arguments.
  page.init({ log_level: 2, heartbeat_interval: 30, max_message_bytes: 100 });
  const inFlight = outcome(page.SS.server.app.square(2));
  await assert.rejects(page.SS.server.app.echo('x'.repeat(60)), (error) => {
    assert.equal(error.code, 'bad_args');
    assert.match(error.message, /^app\.echo: its arguments take 114 bytes as JSON, and the server reads messages of up/);
    assert.match(error.message, /of up to 100 \(server\.max_message_bytes\)$/);
    return true;
  });
  // Counted in UTF-8: 40 letters of two bytes each, though 40 characters.
  await assert.rejects(page.SS.server.app.echo('é'.repeat(40)), /take 134 bytes/);
  let given = null;
  page.SS.server.app.echo('😀'.repeat(14), (value) => {
    given = value;
  });
  assert.match(given && given.message, /take 110 bytes/, 'four bytes for a character outside the BMP');
  // One that fits goes out, the first call is still in flight, and the connection stays.
  const fits = page.SS.server.app.echo('x'.repeat(40));
  assert.deepEqual(page.calls().map((m) => m.method), ['app.square', 'app.echo']);
  page.reply(page.calls()[1].id, 'ok');
  page.reply(page.calls()[0].id, 4);
  assert.equal(await fits, 'ok');
  await turn();
  assert.equal(inFlight.value, 4);
  // Queued while offline, checked when it goes out.
  page.drop(1006);
  const queued = page.SS.server.app.echo('x'.repeat(60));
  page.reconnect();
  page.init({ log_level: 2, heartbeat_interval: 30, max_message_bytes: 100 });
  await assert.rejects(queued, /take 114 bytes/);
  assert.equal(page.calls().length, 0);
});
