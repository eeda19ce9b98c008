// The server-side SocketStream API inside the embedded engine. It runs before
// the app's server bundle. `__host` holds the few native functions the Rust
// side provides; everything else (this.session, SS.publish, SS.server, console,
// timers) is built here on top of them.
(function (global) {
  'use strict';
  var host = global.__host;
  delete global.__host;
  var SS = global.SS || (global.SS = {});
  // Taken before app code runs, which could replace them (see `readsThis`).
  var sourceOf = Function.prototype.toString;
  var apply = Reflect.apply;

  // QuickJS lets objects made alike share their layout (a shape) through a
  // table of the shapes in use. A function made at run time (a `then`
  // callback, say) starts with no properties, then gets `length`, then `name`; unless
  // some object lives in each of the first two layouts, every new function
  // makes a shape of its own and frees it again. These two live for good,
  // held by `host`, which the prelude's functions hold.
  host.shapes = [Object.create(Function.prototype), Object.create(Function.prototype)];
  Object.defineProperty(host.shapes[1], 'length', { value: 0, configurable: true });

  var actions = {};
  var listed = [];
  var libServer = {};
  var tag = 'server';
  // The record (see `call`) of the client's call whose work is running
  // after its synchronous part (`running` holds it during that part):
  // through its awaits, `then` callbacks and timers, as the tag is; null for
  // work no client's call started. What that work throws later fails that
  // call (see `callback`). `caller()` is whichever holds it.
  var owner = null;
  // The console's input being evaluated (its call id), else -1.
  var consoleCall = -1;
  function caller() {
    return running || owner;
  }

  function text(value) {
    if (typeof value === 'string') return value;
    if (value instanceof Error) return value.stack ? value.name + ': ' + value.message + '\n' + value.stack : String(value);
    try {
      var json = JSON.stringify(value);
      return json === undefined ? String(value) : json;
    } catch (e) {
      return String(value);
    }
  }

  // With the bundle's source map (development), stack traces name the app's
  // files: `at send (app/server/chat.js:5:11)`, in the engine's own format.
  // (When the engine cannot run this, on a stack overflow or when out of
  // memory, the error's stack is null.)
  if (host.source) {
    var source = host.source;
    Error.prepareStackTrace = function (error, frames) {
      var out = '';
      for (var i = 0; i < frames.length; i++) {
        var frame = frames[i];
        var name = frame.getFunctionName() || '<anonymous>';
        var file = frame.getFileName();
        var where;
        if (frame.isNative() || file == null) {
          where = 'native';
        } else {
          var line = frame.getLineNumber();
          var column = frame.getColumnNumber();
          where = source(file, line, column) || file + ':' + line + ':' + column;
        }
        out += '    at ' + name + ' (' + where + ')\n';
      }
      return out;
    };
  }

  function logger(level) {
    return function () {
      host.log(level, tag, Array.prototype.map.call(arguments, text).join(' '));
    };
  }
  global.console = { log: logger(2), info: logger(2), debug: logger(3), warn: logger(1), error: logger(0) };

  // The tag across asynchronous steps. ssbuild compiles server code's async
  // functions to note the tag when they are called (`__ss.t()`) and to set it
  // again wherever they resume: `__ss.e(tag, await x)`, and at the start of
  // `catch` and `finally` blocks (a rejected `await` lands there). Callbacks
  // given to `then` (and so `catch` and `finally`) run with the tag of the
  // code that registered them. The owning call goes along with the tag:
  // noted as the tag alone when there is none, else as `{ t, o }`.
  var then = Promise.prototype.then;
  function noteTag() {
    var o = caller();
    return o === null ? tag : { t: tag, o: o };
  }
  function resumeTag(saved, value) {
    if (saved !== null && typeof saved === 'object') {
      tag = saved.t;
      owner = saved.o;
    } else {
      // A function called while the bundle loaded, before the prelude took over, noted nothing.
      tag = saved === undefined ? 'server' : saved;
      owner = null;
    }
    return value;
  }
  function tagged(fn, savedTag, savedOwner) {
    if (typeof fn !== 'function') return fn;
    return function (value) {
      var beforeTag = tag;
      var beforeOwner = owner;
      tag = savedTag;
      owner = savedOwner;
      try {
        return fn(value);
      } finally {
        tag = beforeTag;
        owner = beforeOwner;
      }
    };
  }
  Object.defineProperty(Promise.prototype, 'then', {
    configurable: true,
    writable: true,
    value: {
      then: function (onFulfilled, onRejected) {
        var o = caller();
        return then.call(this, tagged(onFulfilled, tag, o), tagged(onRejected, tag, o));
      }
    }.then
  });

  // Timers: the callbacks stay here; the host only sleeps and calls fire(id).
  var timers = {};
  var nextTimer = 1;
  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('a timer needs a function');
    var id = nextTimer++;
    // A timer set by an action's work logs under its name, and its throw
    // fails that call if nothing answered it yet (see `callback`); one set
    // by code no action runs logs as `timer`.
    timers[id] = { fn: fn, args: args, repeat: repeat, tag: tag === 'server' ? 'timer' : tag, owner: caller() };
    host.setTimer(id, Math.max(0, Number(ms) || 0), repeat);
    return id;
  }
  function clearTimer(id) {
    if (timers[id]) {
      delete timers[id];
      host.clearTimer(id);
    }
  }
  global.setTimeout = function (fn, ms) {
    return addTimer(fn, ms, Array.prototype.slice.call(arguments, 2), false);
  };
  global.setInterval = function (fn, ms) {
    return addTimer(fn, ms, Array.prototype.slice.call(arguments, 2), true);
  };
  global.clearTimeout = clearTimer;
  global.clearInterval = clearTimer;

  // How the console shows a value.
  function describe(value) {
    if (value === undefined) return 'undefined';
    if (typeof value === 'function') return '[Function ' + (value.name || 'anonymous') + ']';
    if (typeof value === 'string') return JSON.stringify(value);
    try {
      var json = JSON.stringify(value, null, 2);
      return json === undefined ? String(value) : json;
    } catch (e) {
      return String(value);
    }
  }

  function stringify(value) {
    // Numbers are the commonest answer; their JSON is their string.
    if (typeof value === 'number') return isFinite(value) ? String(value) : 'null';
    var json = JSON.stringify(value);
    return json === undefined ? 'null' : json;
  }

  // An error meant for the caller (`throw new SS.Error('Type a message
  // first.')`): its message reaches the caller as it is in every
  // environment, without the stack; other errors show only in development.
  // `{ code }` picks the error code the caller gets, `failed` by default:
  // `bad_args` for arguments the action cannot use (a 400 over the HTTP
  // API), `unauthorized`, `not_found`.
  var codes = ['failed', 'bad_args', 'unauthorized', 'not_found'];
  class AppError extends Error {
    constructor(message, options) {
      super(message);
      var code = options && options.code !== undefined ? options.code : 'failed';
      if (codes.indexOf(code) < 0) {
        throw new TypeError('SS.Error takes the code ' + codes.join(', ') + '; not ' + describe(code));
      }
      this.code = code;
    }
  }
  Object.defineProperty(AppError.prototype, 'name', { value: 'SS.Error', writable: true, configurable: true });
  SS.Error = AppError;

  function errorText(error) {
    if (error instanceof AppError) {
      return JSON.stringify({ message: String(error.message), stack: '', expose: true, code: error.code });
    }
    if (error instanceof Error) {
      return JSON.stringify({ message: String(error.name || 'Error') + ': ' + String(error.message), stack: String(error.stack || '') });
    }
    return JSON.stringify({ message: typeof error === 'string' ? error : text(error), stack: '' });
  }

  // A host operation as a Promise that also feeds an optional callback.
  // `c` is the record of the call whose session it is: the host finds the
  // session by the call's id while the call runs, and by its connection
  // afterwards (timers, later callbacks).
  function operation(c, op, args, cb, after) {
    var f = fields(c);
    var promise = new Promise(function (resolve, reject) {
      host.session(f[0], f[4], op, stringify(args), function (error, json, code) {
        // Arguments the server refused (too many channels) are the
        // caller's to see, as an SS.Error of that code would be.
        if (error != null) reject(code === 'bad_args' ? new AppError(error, { code: code }) : new Error(error));
        else resolve(json === undefined ? undefined : JSON.parse(json));
      });
    });
    if (after) promise = promise.then(after);
    if (typeof cb === 'function') {
      var run = callback(c, cb);
      promise.then(run, run);
    }
    return promise;
  }

  // A callback given to the server API runs as part of the action that gave
  // it (`owner`, its record, or null): when the callback throws, that call
  // fails with the error, as if the action had thrown it, unless something
  // answered the call already; then the error goes to the log.
  function callback(owner, cb) {
    return function (value) {
      try {
        cb(value);
      } catch (error) {
        if (!failLate(owner, error)) console.error('a callback threw:', error);
      }
    };
  }
  // Fails the call whose record is `c` with `error`, if the call is
  // still waiting for its answer; `false` when it is not (answered, past
  // its reply timeout, or its caller gone), so that the error is logged.
  function failLate(c, error) {
    // An array is the record of no client's call (see `noCaller`).
    if (!c || Array.isArray(c)) return false;
    var id = host.claim(c);
    return id >= 0 && host.reply(id, true, errorText(error));
  }
  // Fails the client's call whose record is `c` with what its action threw
  // or rejected with; when the call was answered already (or its caller is
  // gone, or past its timeout), the error goes to the log instead.
  function fail(c, error) {
    if (!failLate(c, error)) console.error('after the call was answered (or its caller had gone):', error);
  }

  // What a rejection hands to a callback, which takes errors and answers
  // alike: an Error, so that passing it on fails the call it reaches (a
  // rejection with a string or an object would otherwise pass as an answer).
  // The value rejected with stays as its `reason`.
  function asError(reason) {
    if (reason instanceof Error) return reason;
    var error = new Error(typeof reason === 'string' ? reason : text(reason));
    error.reason = reason;
    return error;
  }

  // A user id, channel or event name given to `api`: a non-empty string, a
  // number, or an object whose String() names it. String(undefined) would
  // quietly publish to (or subscribe to) one named "undefined".
  function named(value, api, what) {
    var type = typeof value;
    var text = value === null || value === undefined || type === 'boolean' ? '' : String(value);
    var unnamed = text === '' || (type === 'number' && !isFinite(value)) ||
      ((type === 'object' || type === 'function') && /^\[object \w+\]$|^function /.test(text));
    if (unnamed) {
      throw new TypeError(api + ' needs ' + what + ' (a non-empty string or a number), not ' +
        (value === '' ? 'an empty string' : Array.isArray(value) ? 'an array' :
          type === 'object' && value !== null ? 'an object' : type === 'function' ? 'a function' : String(value)));
    }
    return text;
  }

  function names(list, api, what) {
    return (Array.isArray(list) ? list : [list]).map(function (value) { return named(value, api, what); });
  }

  // The session API of the call whose `this` is `self` and record `c`.
  function makeSession(self, c, data) {
    var session = {
      id: data.id,
      created_at: data.created_at,
      user_id: data.user_id,
      setUserId: function (userId, cb) {
        // String(null) would sign everyone who passes null in as the user "null".
        var text = userId === null || userId === undefined || typeof userId === 'boolean' ? '' : String(userId);
        if (text === '' || text === 'NaN' || text === '[object Object]') {
          throw new TypeError('setUserId needs a user id (a non-empty string, a number, or an object whose ' +
            'String() names the user), not ' + (userId === '' ? 'an empty string' : String(userId)) +
            '; to sign out, call this.session.user.logout()');
        }
        return operation(c, 'set_user', [text], cb, function () {
          session.user_id = text;
          return true;
        });
      },
      authenticate: function (moduleName, params, cb) {
        var id = libServer[moduleName];
        var promise = new Promise(function (resolve, reject) {
          if (id === undefined) throw new Error('no lib/server module named ' + moduleName + ' (authenticate)');
          var auth = __ss.load(id).authenticate;
          if (typeof auth !== 'function') throw new Error('lib/server/' + moduleName + ' does not export authenticate(params, cb)');
          var answered = false;
          var answer = function (response) {
            if (answered) return;
            answered = true;
            resolve(response || { success: false });
          };
          var returned = auth(params, answer);
          if (returned && typeof returned.then === 'function') returned.then(answer, reject);
        });
        if (typeof cb === 'function') {
          var run = callback(c, cb);
          // A module that throws, or is not there, hands the callback an
          // Error, as any rejection does (see `asError`): passed on, it fails
          // the call (in production without its details), rather than
          // answering it with what went wrong.
          promise.then(run, function (e) { run(asError(e)); });
        }
        return promise;
      },
      channel: {
        subscribe: function (list, cb) {
          return operation(c, 'subscribe', names(list, 'channel.subscribe', 'channel names'), cb);
        },
        unsubscribe: function (list, cb) {
          return operation(c, 'unsubscribe', names(list, 'channel.unsubscribe', 'channel names'), cb);
        },
        list: function (cb) {
          return operation(c, 'channels', [], cb);
        }
      },
      user: {
        logout: function (cb) {
          return operation(c, 'logout', [], cb, function () {
            session.user_id = null;
            return true;
          });
        }
      },
      on: function (event, fn) {
        if (event !== 'disconnect') throw new Error('session.on: the only event is "disconnect"');
        if (typeof fn !== 'function') throw new TypeError('session.on needs a function');
        if (data.connection < 0) return;
        if (!host.live(data.connection)) {
          // Already gone: run it now rather than never.
          setTimeout(function () {
            try {
              fn.call(self, session);
            } catch (error) {
              console.error('a session.on("disconnect") handler threw:', error);
            }
          }, 0);
          return;
        }
        disconnects[data.connection] = (disconnects[data.connection] || []).concat([fn]);
      }
    };
    return session;
  }

  var disconnects = {};

  // A client's call is held here by its record, which the host makes: a
  // native function, the callback the action gets (calling it answers the
  // call; the first answer wins, and an Error fails the call), which the
  // prelude passes around to tie later work to the call (`running`,
  // `owner`). The rest it needs, [call id, session id, created at, user
  // id, connection (-1: none)], `fields(c)` asks the host for. A call no
  // client made (server code's, see `noCaller`) has an array for its
  // record instead: those fields (call id -1), then whether it was
  // answered (see `first`).
  function fields(c) {
    return Array.isArray(c) ? c : host.record(c);
  }

  // `this` inside an action is made only for an action whose source can
  // read it (see `readsThis`): an object whose prototype is the action's
  // own (see `order`, and `callContext` behind it), made as a literal
  // (`{ __proto__: ..., _call: record }`), which costs less here than a
  // constructor call or `Object.create`. The session object (a dozen
  // closures) is only built when the action reads this.session, and only
  // then does `this` get one more property (each one added to an object
  // made per call costs a change of its shape).
  var callContext = {};
  Object.defineProperty(callContext, 'session', {
    get: function () {
      if (this._session) return this._session;
      var c = fields(this._call);
      var data = { id: c[1], created_at: c[2], user_id: c[3] === undefined ? null : c[3], connection: c[4] };
      return (this._session = makeSession(this, this._call, data));
    }
  });
  // `this` for server code no client called (SS.server from server code, Basic Auth): a blank session.
  function noCaller() {
    return { __proto__: callContext, _call: [-1, '', 0, null, -1, false] };
  }

  // Whether an action's source can read its `this`: it names `this`,
  // `super` (a method called through it gets the same `this`) or `eval`,
  // or holds a `\u` escape (`ev\u0061l` is a direct eval too), or its
  // source is not at hand (a native, bound or proxied function). A word in
  // a string or a comment only costs such an action a `this` it does not use.
  var readsThisPattern = /\bthis\b|\bsuper\b|\beval\b|\\u|\[native code\]/;
  function readsThis(fn) {
    try {
      return readsThisPattern.test(apply(sourceOf, fn, []));
    } catch (e) {
      return true;
    }
  }

  // For a call server code made (its record an array): whether this is
  // its first answer (and marks it answered). Whichever comes first of its
  // callback, its return value and its promise wins, as for a client's
  // call, whose record keeps the same rule natively.
  function first(c) {
    if (c[5]) return false;
    c[5] = true;
    return true;
  }

  // The record of the client's call whose action is running now, from
  // `call`.
  var running = null;

  // For calls server code makes (`SS.server` from server code): a function
  // that runs an action with `argc` arguments and `this` as `self`, and
  // gives each answer to `settle(c, isError, value)`, which keeps the first
  // (see `first`). Up to two arguments come as `a` and `b`,
  // more as the array `a` (so that a call needs no array and no `apply`,
  // which copies its arguments into a new list). The callback goes after
  // the caller's arguments; a returned value or Promise answers as well.
  // The callback is an arrow function written where it is passed: a plain
  // function also gets a `prototype`, and one stored in a variable gets a
  // `name` written. `settle` comes from this outer function, not as an
  // argument: a callback that closes over an argument of the running
  // function costs one more allocation for every call.
  function runner(settle) {
    return function (fn, c, self, argc, a, b) {
      var result;
      try {
        switch (argc) {
          case 0: result = fn.call(self, (value) => settle(c, false, value)); break;
          case 1: result = fn.call(self, a, (value) => settle(c, false, value)); break;
          case 2: result = fn.call(self, a, b, (value) => settle(c, false, value)); break;
          default: a.push((value) => settle(c, false, value)); result = fn.apply(self, a);
        }
      } catch (error) {
        settle(c, true, error);
        return;
      }
      if (result && typeof result.then === 'function') {
        result.then((value) => settle(c, false, value), (error) => settle(c, true, error));
      } else if (typeof result !== 'undefined') {
        settle(c, false, result);
      }
    };
  }

  SS.publish = {
    user: function (userId, event, data) {
      var api = 'SS.publish.user';
      host.publish('user', stringify([named(userId, api, 'a user id')]), named(event, api, 'an event name'),
        stringify(data));
    },
    users: function (userIds, event, data) {
      var api = 'SS.publish.users';
      host.publish('users', stringify(names(userIds, api, 'user ids')), named(event, api, 'an event name'),
        stringify(data));
    },
    broadcast: function (event, data) {
      host.publish('broadcast', '[]', named(event, 'SS.publish.broadcast', 'an event name'), stringify(data));
    },
    channel: function (channels, event, data) {
      var api = 'SS.publish.channel';
      host.publish('channel', stringify(names(channels, api, 'channel names')), named(event, api, 'an event name'),
        stringify(data));
    }
  };
  SS.users = {
    online: {
      now: function (cb) {
        var promise = new Promise(function (resolve) {
          host.online(function (json) { resolve(JSON.parse(json)); });
        });
        if (typeof cb === 'function') promise.then(callback(caller(), cb));
        return promise;
      }
    }
  };
  SS.server = SS.server || {};

  function mountServer(name, fn) {
    var parts = name.split('.');
    var node = SS.server;
    for (var i = 0; i < parts.length - 1; i++) node = __ss.branch(node, parts[i]);
    // From server code: SS.server.a.b(args..., cb) or a Promise; `this.session` is a blank session.
    __ss.define(node, parts[parts.length - 1], function () {
      var from = caller();
      var args = Array.prototype.slice.call(arguments);
      var cb = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      var promise = new Promise(function (resolve, reject) {
        var argc = args.length;
        var run = runner(function (c, isError, value) {
          if (!first(c)) return;
          if (isError || value instanceof Error) reject(value);
          else resolve(value);
        });
        var self = noCaller();
        run(fn, self._call, self, argc, argc > 2 ? args : args[0], args[1]);
      });
      if (cb) {
        var run = callback(from, cb);
        promise.then(run, function (e) { run(asError(e)); });
      }
      return promise;
    });
  }

  // What a value is, in a few words, for a warning.
  function kind(value) {
    if (value === null) return 'null';
    if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
    var shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
    if (shown.length > 40) shown = shown.slice(0, 40) + '...';
    return 'the ' + typeof value + ' ' + shown;
  }

  // Mounts the functions of `tree` (the `actions` of the file at `file`,
  // or a namespace in them at `inner`) as actions named under `prefix`;
  // what is neither a function nor a namespace of them is noted in
  // `warnings`, since no one can call it.
  function walk(tree, prefix, file, inner, warnings) {
    Object.keys(tree || {}).forEach(function (key) {
      var value = tree[key];
      var name = prefix + '.' + key;
      if (typeof value === 'function') {
        actions[name] = { fn: value, owner: tree };
        mountServer(name, value);
      } else if (value && typeof value === 'object' && !Array.isArray(value)) {
        walk(value, name, file, inner + '.' + key, warnings);
      } else {
        warnings.push(file + ': `' + inner + '.' + key + '` is ' + kind(value) +
          ', not a function, so it cannot be called');
      }
    });
  }

  // Whether a server file's exports hold its actions; else a warning
  // saying how to write them (each file of app/server is there for them).
  function checkActions(exports, file, warnings) {
    var given = exports.actions;
    if (given && typeof given === 'object' && !Array.isArray(given)) return true;
    var fix = exports['default'] && typeof exports['default'] === 'object' && 'actions' in exports['default'] ?
      'it has `export default { actions }`: export `actions` by name instead (`export const actions = { ... }`)' :
      'write `exports.actions = { ... }` or `export const actions = { ... }`, and keep helpers in lib/server';
    warnings.push(file + ' has no `actions` object' + (given === undefined ? '' : ' (`actions` is ' + kind(given) + ')') +
      ', so none of its functions can be called: ' + fix);
    return false;
  }

  global.__ss_host = {
    // files: [[file key like "app" or "admin.users", server module id], ...]
    index: function (filesJson, libJson) {
      __ss.t = noteTag;
      __ss.e = resumeTag;
      libServer = JSON.parse(libJson);
      var guarded = [];
      var warnings = [];
      JSON.parse(filesJson).forEach(function (file) {
        var exports = __ss.load(file[1]);
        var path = __ss.name(file[1]);
        if (checkActions(exports, path, warnings)) walk(exports.actions, file[0], path, 'actions', warnings);
        // Read at run time too: `exports.authenticate = SOME_FLAG` is not visible to the packer.
        if (exports.authenticate) guarded.push(file[0]);
      });
      // The host sorts the actions and gives their order back (`order`).
      return JSON.stringify({ actions: Object.keys(actions), authenticate: guarded, warnings: warnings });
    },
    // The order the host names actions in: it calls the action at `order[i]`
    // as `i`. Each action is held as the method `__ss_run` of an object of
    // its own (see `call`): for one that can read `this`, the prototype of
    // the `this` each call gets; for one that cannot, the `this` of every
    // call, which it never sees.
    order: function (namesJson) {
      listed = JSON.parse(namesJson).map(function (name) {
        var fn = actions[name].fn;
        var plain = !readsThis(fn);
        var context = plain ? {} : Object.create(callContext);
        Object.defineProperty(context, '__ss_run', { value: fn });
        return { name: name, plain: plain, context: context };
      });
    },
    // A client's call of the action listed at `index`, with `argc`
    // arguments: up to two come as `a` and `b`, more as the array `a`. `c`
    // is the call's record, and the callback the action gets: the host
    // sends the answer given to it (an answer given before `call` returns
    // goes back with the host's reply to the entry). It runs the action the
    // way `runner` does, with the record as the callback, and as a method
    // (a call through `Function.prototype.call` costs a trip through native
    // code): of a `this` made for the call when the action can read it,
    // else of its shared object (see `order`).
    call: function (c, index, argc, a, b) {
      var action = listed[index];
      tag = action.name;
      running = c;
      var result;
      try {
        var self = action.plain ? action.context : { __proto__: action.context, _call: c };
        switch (argc) {
          case 0: result = self.__ss_run(c); break;
          case 1: result = self.__ss_run(a, c); break;
          case 2: result = self.__ss_run(a, b, c); break;
          default: a.push(c); result = self.__ss_run.apply(self, a);
        }
      } catch (error) {
        fail(c, error);
        tag = 'server';
        running = null;
        return;
      }
      // Still as the action: `then` notes the tag and the call for its callbacks.
      if (result && typeof result.then === 'function') {
        result.then(c, (error) => fail(c, error));
      } else if (typeof result !== 'undefined') {
        c(result);
      }
      // No `finally`: what throws on its way out of here (a `then` that
      // throws, the time limit) fails the call, and the host calls `stopped`,
      // which sets these back.
      tag = 'server';
      running = null;
    },
    // The answer `value`, given to the record of the call `id` (of the
    // action `name`), when it is not a number, a string, a boolean, null or
    // undefined (those the host sends itself). The call is claimed already.
    finish: function (id, name, value) {
      if (value instanceof Error) {
        host.reply(id, true, errorText(value));
        return;
      }
      var json;
      try {
        json = stringify(value);
      } catch (e) {
        host.reply(id, true, errorText(new TypeError(name + ' answered with something that is not JSON: ' + e.message)));
        return;
      }
      host.reply(id, false, json);
    },
    // The actions called with no `this` made for them (see `readsThis`).
    plain: function () {
      return listed.filter(function (entry) { return entry.plain; }).map(function (entry) { return entry.name; });
    },
    // After the time limit stopped an entry into JavaScript, which runs no
    // `finally` on its way out: forgets the calls it stopped.
    stopped: function () {
      __ss.stopped();
      running = null;
      owner = null;
      tag = 'server';
    },
    // After the time limit stopped a promise callback or a timer, which
    // run no `catch` or `finally` on their way out: forgets the state as
    // `stopped` does, and claims the client's call that work ran for, if it
    // still waits for its answer (its id, else -1), for the host to fail.
    interrupted: function () {
      var o = running || owner;
      __ss.stopped();
      running = null;
      owner = null;
      tag = 'server';
      if (o && !Array.isArray(o)) return host.claim(o);
      // In the console's own process, what runs for no call is the input
      // it waits for (whose top-level awaits carry no owner).
      return consoleCall;
    },
    fire: function (id) {
      var timer = timers[id];
      if (!timer) return;
      if (!timer.repeat) delete timers[id];
      tag = timer.tag;
      owner = timer.owner;
      try {
        timer.fn.apply(null, timer.args);
      } catch (error) {
        if (!failLate(timer.owner, error)) throw error;
      } finally {
        tag = 'server';
        owner = null;
      }
    },
    // After promise jobs ran: what runs next, runs for no action until it says so.
    idle: function () {
      tag = 'server';
      owner = null;
    },
    // A connection closed: its `session.on('disconnect')` handlers run with
    // the session as it is now (signed in since, or out), as their argument
    // and as `this.session`. What they do with it at once, or after awaiting
    // what is settled already, finds it; once they wait on something else (a
    // timer, a session operation), the connection is forgotten, and with it
    // the session.
    disconnect: function (connection, sessionId, createdAt, userId) {
      tag = 'server';
      owner = null;
      var list = disconnects[connection];
      if (!list) return;
      delete disconnects[connection];
      var self = { __proto__: callContext, _call: [-1, sessionId, createdAt, userId, connection, true] };
      var session = self.session;
      list.forEach(function (fn) {
        try {
          fn.call(self, session);
        } catch (error) {
          console.error('a session.on("disconnect") handler threw:', error);
        }
      });
    },
    // HTTP API Basic Auth through a lib/server module: answers with its response.
    authenticate: function (callId, moduleName, username, password) {
      tag = 'server';
      owner = null;
      var self = noCaller();
      self.session.authenticate(moduleName, { username: username, password: password }).then(function (response) {
        host.reply(callId, false, stringify(response));
      }, function (error) {
        host.reply(callId, true, errorText(error));
      });
    },

    // The console: evaluates one input and answers through reply(), awaiting a Promise.
    evaluate: function (callId, source) {
      consoleCall = callId;
      var answer = function (value) {
        consoleCall = -1;
        host.reply(callId, false, JSON.stringify(describe(value)));
      };
      var fail = function (error) {
        consoleCall = -1;
        host.reply(callId, true, errorText(error));
      };
      tag = 'console';
      owner = null;
      try {
        // A Promise of { value } (see the host's `script`); a value that is
        // itself a Promise is awaited too.
        host.script(source).then(function (completion) {
          var value = completion && completion.value;
          if (value && typeof value.then === 'function') value.then(answer, fail);
          else answer(value);
        }, fail);
      } catch (error) {
        fail(error);
      } finally {
        tag = 'server';
      }
    }
  };
})(globalThis);
