// SocketStream browser client: SS.server, SS.events and SS.socket over one
// WebSocket, speaking the protocol of docs/protocol.md.
//
// - SS.server.a.b(args..., cb) calls an action; without a callback it returns
//   a Promise. cb gets the result, or an Error (with .code) when the call failed.
//   SS.server.a.b.with({ timeout: ms, silent: true })(args...) sets options.
// - Calls made while disconnected wait in a bounded queue and go out once the
//   session is ready again. Calls in flight when the connection drops fail with
//   the code "disconnected": they may or may not have run.
// - The socket reconnects forever, with exponential back-off and jitter,
//   starting over once a session has stayed up a while.
// - SS.client.app.init() runs once per page load, when the first session is ready.
// - In development the server names its build in `init`: a page whose code,
//   layout or templates are older reloads itself; one whose stylesheet alone
//   is older swaps it in place.
(function (global) {
  'use strict';
  var SS = global.SS || (global.SS = {});
  var PROTOCOL = 1;
  var QUEUE_LIMIT = 1000;
  var MAX_DELAY = 30000;
  // How long a session stays up before the back-off starts over.
  var STEADY = 5000;

  // max_message_bytes: the largest message the server reads (0: unknown).
  var settings = { log_level: 2, heartbeat_interval: 30, max_message_bytes: 0 };
  var socket = null;
  var ready = false;
  var started = false;
  var stopped = false;
  var attempts = 0;
  var steady = null;
  var nextId = 1;
  var inFlight = {};
  var queue = [];
  var heartbeat = null;
  var awaitingBeat = false;
  var build = null;

  function emitter() {
    // No prototype: an event may be named `constructor` or `__proto__`.
    var handlers = Object.create(null);
    return {
      on: function (name, fn) {
        (handlers[name] || (handlers[name] = [])).push(fn);
      },
      off: function (name, fn) {
        var list = handlers[name];
        if (!list) return;
        handlers[name] = fn ? list.filter(function (h) { return h !== fn; }) : [];
      },
      emit: function (name, args) {
        (handlers[name] || []).slice().forEach(function (fn) {
          try {
            fn.apply(null, args);
          } catch (error) {
            appError('a handler of "' + name + '" threw', error);
          }
        });
      }
    };
  }

  function log(level, kind, parts) {
    if (settings.log_level >= level && global.console) global.console[kind].apply(global.console, parts);
  }

  // What the app's own code threw (an event handler, a call's callback,
  // init): logged with what it was doing, or, where the log is off
  // (production), handed to the browser's own reporting, so that it reaches
  // the console, window.onerror and error trackers all the same.
  function appError(what, error) {
    if (settings.log_level >= 1) {
      log(1, 'error', ['SocketStream: ' + what + ':', error]);
    } else if (typeof global.reportError === 'function') {
      global.reportError(error);
    } else {
      setTimeout(function () {
        throw error;
      }, 0);
    }
  }

  var events = emitter();
  var socketEvents = emitter();
  SS.events = { on: events.on, off: events.off };
  SS.socket = {
    on: socketEvents.on,
    off: socketEvents.off,
    get connected() { return ready; }
  };
  SS.server = SS.server || {};

  function failure(code, message) {
    var error = new Error(message);
    error.code = code;
    return error;
  }

  function settle(entry, error, result) {
    if (entry.done) return;
    entry.done = true;
    if (entry.timer) clearTimeout(entry.timer);
    if (!entry.options.silent) {
      if (error) log(1, 'error', ['SocketStream: ' + entry.method + ' failed:', error.message]);
      else if (settings.log_level >= 3) log(3, 'log', ['-> ' + entry.method, entry.args, result]);
      // Without a callback the result is printed, as typed calls in the browser console expect.
      else log(2, 'log', entry.callback ? ['-> ' + entry.method] : ['-> ' + entry.method, result]);
    }
    if (entry.callback) {
      try {
        entry.callback(error || result);
      } catch (thrown) {
        appError('the callback of ' + entry.method + ' threw', thrown);
      }
    } else if (error) {
      entry.reject(error);
    } else {
      entry.resolve(result);
    }
  }

  // How many bytes `text` takes in UTF-8 (a surrogate pair: 2 + 2).
  function utf8Length(text) {
    var n = text.length;
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
    }
    return n;
  }

  function send(entry) {
    var id = nextId++;
    var text = '{"type":"call","id":' + id + ',"method":' + JSON.stringify(entry.method) + ',"args":' +
      entry.json + (entry.options.silent ? ',"silent":true}' : '}');
    // The server would close the connection on a message over its limit,
    // failing every call in flight: this one alone fails, unsent.
    var limit = settings.max_message_bytes;
    if (limit > 0 && text.length * 3 > limit) {
      var size = utf8Length(text);
      if (size > limit) {
        settle(entry, failure('bad_args', entry.method + ': its arguments take ' + size + ' bytes as JSON, and the ' +
          'server reads messages of up to ' + limit + ' (server.max_message_bytes)'));
        return;
      }
    }
    entry.id = id;
    inFlight[id] = entry;
    if (!entry.options.silent) log(4, 'log', ['<- ' + entry.method, entry.args]);
    socket.send(text);
  }

  function call(method, args, options) {
    var entry = { method: method, args: args, options: options || {}, done: false };
    if (typeof args[args.length - 1] === 'function') entry.callback = args.pop();
    var promise = entry.callback ? undefined : new Promise(function (resolve, reject) {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    // Turned into JSON now: arguments that cannot be (a BigInt, a cycle)
    // fail this call alone, rather than the sending of the queue later.
    try {
      entry.json = JSON.stringify(args);
    } catch (error) {
      settle(entry, failure('bad_args', method + ': its arguments cannot be sent as JSON (' + error.message + ')'));
      return promise;
    }
    if (entry.options.timeout > 0) {
      entry.timer = setTimeout(function () {
        var at = queue.indexOf(entry);
        if (at >= 0) queue.splice(at, 1);
        if (entry.id) delete inFlight[entry.id];
        settle(entry, failure('timeout', method + ' got no reply within ' + entry.options.timeout + ' ms'));
      }, entry.options.timeout);
    }
    if (stopped) {
      settle(entry, failure('disconnected', method + ': this page is out of date for the server; reload it'));
    } else if (ready && socket.readyState === 1) {
      send(entry);
    } else if (queue.length >= QUEUE_LIMIT) {
      settle(entry, failure('queue_full', method + ': ' + QUEUE_LIMIT + ' calls are already waiting for the connection'));
    } else {
      queue.push(entry);
    }
    return promise;
  }

  function stub(method) {
    var fn = function () {
      return call(method, Array.prototype.slice.call(arguments), {});
    };
    fn.with = function (options) {
      return function () {
        return call(method, Array.prototype.slice.call(arguments), options);
      };
    };
    return fn;
  }

  // The stubs this page made, by method name: a new build's tree replaces
  // them, and those it no longer lists go, with the branches left empty.
  var stubs = Object.create(null);

  function mount(target, tree, path) {
    Object.keys(tree).forEach(function (key) {
      var name = path ? path + '.' + key : key;
      if (tree[key] === 1) {
        stubs[name] = __ss.define(target, key, stub(name));
      } else {
        mount(__ss.branch(target, key), tree[key], name);
      }
    });
  }

  function listed(tree, name) {
    var node = tree;
    var keys = name.split('.');
    for (var i = 0; i < keys.length; i++) {
      if (!node || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, keys[i])) return false;
      node = node[keys[i]];
    }
    return node === 1;
  }

  function unmount(tree) {
    Object.keys(stubs).forEach(function (name) {
      if (listed(tree, name)) return;
      var keys = name.split('.');
      var chain = [SS.server];
      for (var i = 0; i < keys.length - 1; i++) {
        var next = chain[i][keys[i]];
        if (!next || typeof next !== 'object') break;
        chain.push(next);
      }
      var last = keys.length - 1;
      // Only a stub of this page's making is taken away, never what app code put there.
      if (chain.length === keys.length && chain[last][keys[last]] === stubs[name]) {
        delete chain[last][keys[last]];
        // Empty means nothing at all: no hidden property or symbol the app put there either.
        for (var j = last; j > 0 && Reflect.ownKeys(chain[j]).length === 0; j--) delete chain[j - 1][keys[j - 1]];
      }
      delete stubs[name];
    });
  }

  function beat() {
    if (!socket || !ready) return;
    if (awaitingBeat) {
      // The last heartbeat went unanswered: treat the connection as gone now,
      // without waiting for the browser's closing handshake to time out.
      var dead = socket;
      dead.onmessage = null;
      dead.onclose = null;
      onClose({ code: 4408, reason: 'no answer to a heartbeat' });
      dead.close();
      return;
    }
    awaitingBeat = true;
    socket.send('{"type":"hb"}');
  }

  // The element `tag` whose attribute `name` is exactly `value`.
  function element(tag, name, value) {
    var list = global.document.getElementsByTagName(tag);
    for (var i = 0; i < list.length; i++) {
      if (list[i].getAttribute(name) === value) return list[i];
    }
    return null;
  }

  var RELOADED = 'SocketStream.reloaded_for';

  function storage(action) {
    try {
      return action(global.sessionStorage);
    } catch (error) {
      return null;
    }
  }

  function reload(why) {
    // A page that reloaded for this very build and still does not have it
    // (something caches the page) stops here instead of reloading forever.
    if (storage(function (s) { return s.getItem(RELOADED); }) === why) {
      log(1, 'error', ['SocketStream: this page is still not the server\'s build after a reload (' + why + ')']);
      return false;
    }
    storage(function (s) { s.setItem(RELOADED, why); });
    log(2, 'log', ['SocketStream: the app changed; reloading the page']);
    if (socket) {
      socket.onclose = null;
      socket.close(1000, 'reloading');
      socket = null;
    }
    stop('the page is reloading for a new build of the app');
    global.location.reload();
    return true;
  }

  // The connection is given up for good (a reload, or a protocol this
  // client does not speak): every call still waiting fails, none is sent
  // again, and `reconnect_failed` says why.
  function stop(reason) {
    stopped = true;
    dropCalls(reason);
    queue.splice(0).forEach(function (entry) {
      settle(entry, failure('disconnected', entry.method + ': ' + reason));
    });
    socketEvents.emit('reconnect_failed', [reason]);
  }

  function swapStyles(old, next) {
    var current = old.css && element('link', 'href', old.css);
    if (!next.css) {
      if (current) current.parentNode.removeChild(current);
      return;
    }
    var link = global.document.createElement('link');
    link.rel = 'stylesheet';
    if (next.css_integrity) {
      link.integrity = next.css_integrity;
      link.crossOrigin = 'anonymous';
    }
    link.href = next.css;
    // The old sheet stays until the new one applies, so nothing flashes unstyled.
    link.onload = function () {
      if (current && current.parentNode) current.parentNode.removeChild(current);
    };
    // A sheet that does not load (gone already, or failing its integrity
    // check): the page reloads rather than keep a link that is not applied.
    link.onerror = function () {
      if (link.parentNode) link.parentNode.removeChild(link);
      reload(next.css);
    };
    if (current) current.parentNode.insertBefore(link, current.nextSibling);
    else global.document.head.appendChild(link);
    log(2, 'log', ['SocketStream: the stylesheet changed; swapped in place']);
  }

  // Whether the page must reload to run the server's build (see docs/protocol.md).
  function outOfDate(next) {
    if (!next || !global.document) return false;
    var old = build;
    build = next;
    if (next.js && !element('script', 'src', next.js)) return reload(next.js);
    // The layout or a template changed (they are in the page itself).
    if (old && old.page && next.page && old.page !== next.page) return reload(next.js + ' ' + next.page);
    // The page's first session: the page itself is the build it was loaded
    // with, its stylesheet included.
    if (!old && next.css && !element('link', 'href', next.css)) return reload(next.js + ' ' + next.css);
    // Up to date: a later build may reload the page again.
    storage(function (s) { s.removeItem(RELOADED); });
    if (old && old.css !== next.css) swapStyles(old, next);
    return false;
  }

  function onInit(message) {
    if (outOfDate(message.build)) return;
    // What the server sends replaces the defaults one by one: a field it
    // leaves out, or sends as something other than a number, keeps its value.
    var told = message.client || {};
    for (var key in settings) {
      if (typeof told[key] === 'number' && isFinite(told[key])) settings[key] = told[key];
    }
    SS.env = message.env;
    unmount(message.api || {});
    mount(SS.server, message.api || {}, '');
    ready = true;
    // The back-off starts over once the session has stayed up a while, not
    // at once: a server that accepts and then drops every connection does
    // not get a reconnect from every client every quarter of a second.
    clearTimeout(steady);
    steady = setTimeout(function () {
      attempts = 0;
    }, STEADY);
    awaitingBeat = false;
    heartbeat = setInterval(beat, Math.max(0.01, settings.heartbeat_interval) * 1000);
    var waiting = queue;
    queue = [];
    waiting.forEach(send);
    var first = !started;
    started = true;
    socketEvents.emit('connect', []);
    if (!first) socketEvents.emit('reconnect', []);
    if (first) {
      var app = SS.client && SS.client.app;
      if (app && typeof app.init === 'function') {
        try {
          var running = app.init();
          // An async init() rejects rather than throws.
          if (running && typeof running.then === 'function') {
            running.then(null, function (error) {
              appError('SS.client.app.init() failed', error);
            });
          }
        } catch (error) {
          appError('SS.client.app.init() threw', error);
        }
      }
    }
  }

  function onMessage(text) {
    var message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      log(1, 'error', ['SocketStream: the server sent something that is not JSON']);
      return;
    }
    // Anything from the server shows it is alive, not only the answer to a
    // heartbeat (which waits unread while the server has as many of this
    // page's calls in flight as it allows).
    awaitingBeat = false;
    switch (message.type) {
      case 'init':
        if (message.v !== PROTOCOL) log(1, 'error', ['SocketStream: the server speaks protocol ' + message.v + ', this page ' + PROTOCOL]);
        onInit(message);
        break;
      case 'reply':
        var entry = inFlight[message.id];
        if (!entry) return;
        delete inFlight[message.id];
        if (message.error) settle(entry, failure(message.error.code, message.error.message));
        else settle(entry, null, message.result);
        break;
      case 'event':
        log(2, 'log', settings.log_level >= 3 ? ['=> ' + message.event, message.data] : ['=> ' + message.event]);
        events.emit(message.event, [message.data, message.channel]);
        break;
      case 'hb':
        break;
    }
  }

  // The connection is gone: its heartbeat stops, and the calls sent on it
  // fail, as they may or may not have run.
  function dropCalls(why) {
    ready = false;
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
    var lost = inFlight;
    inFlight = {};
    Object.keys(lost).forEach(function (id) {
      settle(lost[id], failure('disconnected', lost[id].method + ': ' + why + '; the call may or may not have run'));
    });
  }

  function onClose(event) {
    var wasReady = ready;
    socket = null;
    clearTimeout(steady);
    dropCalls('the connection dropped before the reply');
    if (wasReady) socketEvents.emit('disconnect', [event.code, event.reason]);
    if (event.code === 4001) {
      log(1, 'error', ['SocketStream: ' + event.reason + '; reload the page']);
      stop(event.reason);
      return;
    }
    // A server going away (restarting, or in development serving a new
    // build) after a session was up: the next one is likely there at once,
    // so the back-off starts over rather than growing with each restart.
    if (event.code === 1001 && wasReady) attempts = 0;
    var ceiling = Math.min(MAX_DELAY, 250 * Math.pow(2, attempts));
    var delay = ceiling / 2 + Math.random() * ceiling / 2;
    attempts++;
    socketEvents.emit('reconnecting', [attempts, Math.round(delay)]);
    setTimeout(connect, delay);
  }

  function connect() {
    if (stopped || socket) return;
    var scheme = global.location.protocol === 'https:' ? 'wss:' : 'ws:';
    try {
      socket = new global.WebSocket(scheme + '//' + global.location.host + '/_ss/ws?v=' + PROTOCOL);
    } catch (error) {
      // The browser refused to open it at all (a content security policy, say),
      // so no close event will come: the attempt fails as a dropped connection
      // does, once the running script is done, as a close event would, and the
      // back-off goes on.
      socket = null;
      var reason = String((error && error.message) || error);
      setTimeout(function () {
        onClose({ code: 1006, reason: reason });
      }, 0);
      return;
    }
    socket.onmessage = function (event) {
      onMessage(event.data);
    };
    socket.onclose = onClose;
  }

  // The actions the packer found (the bundle sets `__ss.api` before this
  // library runs): their stubs exist from the start, so that a call made
  // before the first session is ready waits in the queue rather than
  // meeting `undefined`. The server's own tree replaces this one at init.
  if (__ss.api) mount(SS.server, __ss.api, '');

  // Only in a browser page served over HTTP(S); elsewhere (tests, file://) the socket stays closed.
  if (global.WebSocket && global.location && /^https?:$/.test(global.location.protocol)) connect();
})(typeof globalThis !== 'undefined' ? globalThis : this);
