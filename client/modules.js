// SocketStream module loader: the first part of every packed bundle.
//
// ssbuild wraps each module of the app as
//   __ss.d(id, { "./specifier": otherId, ... }, function (require, module, exports) { ... });
// and ends the bundle with
//   __ss.boot({ client: tree, shared: tree }, [ids to load at start], [module paths]);
// where a tree's leaves are module ids. Modules run once, on first require,
// with CommonJS semantics (a cycle sees the partial exports of the module that
// is still loading). The trees become SS.client, SS.shared, ... : each leaf is
// the exports of its module.
var __ss = (function (global) {
  'use strict';
  var SS = global.SS || (global.SS = {});
  var definitions = [];
  var loaded = [];
  var names = [];
  // The module whose top level threw `failure`, the value the last load
  // that failed threw (a thrown string carries no stack to tell where it
  // came from): reported by `failedIn`. `unwinding` while that value passes
  // out through the modules that required that one.
  var failure;
  var failedIn = -1;
  var unwinding = false;
  // The modules whose top level is running, innermost last.
  var running = [];

  // Whether two thrown values are the same (NaN included).
  function same(a, b) {
    return a === b || (a !== a && b !== b);
  }

  function describe(id) {
    return names[id] || 'module #' + id;
  }

  function load(id) {
    var record = loaded[id];
    if (record) return record.exports;
    var definition = definitions[id];
    if (!definition) throw new Error('SocketStream: ' + describe(id) + ' is not in this bundle');
    var module = { id: id, exports: {} };
    loaded[id] = module;
    var deps = definition[0];
    var require = function (specifier) {
      var target = deps[specifier];
      if (target === undefined) {
        throw new Error("Cannot find module '" + specifier + "' from " + describe(id) +
          ': only paths written as string literals are packed');
      }
      return load(target);
    };
    // A failure the requiring module caught is over once it loads another.
    unwinding = false;
    running.push(id);
    try {
      definition[1].call(module.exports, require, module, module.exports);
    } catch (error) {
      loaded[id] = undefined;
      // Set where it was thrown, and kept on the way out (unless a module
      // on the way throws something else).
      if (!unwinding || !same(failure, error)) {
        failure = error;
        failedIn = id;
        unwinding = true;
      }
      throw error;
    } finally {
      running.pop();
    }
    // This one loaded: a failure it caught is over.
    unwinding = false;
    return module.exports;
  }

  // The own property `key` of `target` as a plain object, made if needed: never
  // a built-in reached through the prototype (`constructor`, `toString`) and
  // never the prototype itself (`__proto__`).
  function branch(target, key) {
    var own = Object.prototype.hasOwnProperty.call(target, key) ? target[key] : null;
    if (own && typeof own === 'object') return own;
    return define(target, key, {});
  }

  function define(target, key, value) {
    Object.defineProperty(target, key, { value: value, enumerable: true, configurable: true, writable: true });
    return value;
  }

  function mount(target, tree) {
    Object.keys(tree).forEach(function (key) {
      var node = tree[key];
      if (typeof node === 'number') {
        Object.defineProperty(target, key, {
          enumerable: true,
          configurable: true,
          get: function () { return load(node); }
        });
      } else {
        mount(branch(target, key), node);
      }
    });
  }

  return {
    d: function (id, deps, body) {
      definitions[id] = [deps, body];
    },
    load: load,
    // The path of the module `id` (`app/server/chat.js`), for messages.
    name: describe,
    // The module whose top level threw `error`, when the last load that
    // failed threw it; else the innermost module still loading, which is
    // where what skips catch and finally stopped (the server's time limit).
    failedIn: function (error) {
      if (failedIn >= 0 && same(failure, error)) return describe(failedIn);
      return running.length ? describe(running[running.length - 1]) : null;
    },
    // After the server's time limit stopped a run of code, which skips
    // every catch and finally on its way out: the modules whose top level
    // it cut short are forgotten, so that the next require runs them again
    // (as after a throw) instead of handing out half-made exports.
    stopped: function () {
      while (running.length) loaded[running.pop()] = undefined;
      unwinding = false;
    },
    // Server code's async functions call these (`t()` when called, and
    // `e(tag, await x)` where they resume); the server replaces both to keep
    // its log tag across waits (docs/server.md). Here they do nothing.
    t: function () {},
    e: function (tag, value) {
      return value;
    },
    // Shared with the socket client and the server's prelude, which mount
    // trees too.
    branch: branch,
    define: define,
    boot: function (trees, start, paths) {
      names = paths || [];
      Object.keys(trees).forEach(function (name) {
        mount(branch(SS, name), trees[name]);
      });
      var failures = [];
      start.forEach(function (id) {
        try {
          load(id);
        } catch (error) {
          // On the server (where the host's prelude ran first) the error
          // stops the load: the host reports it once and refuses the build,
          // and the module does not run a second time when the host reads
          // its actions.
          if (global.__ss_host) throw error;
          failures.push(error);
          var where = failedIn >= 0 && failedIn !== id && same(failure, error) ?
            ' (thrown by ' + describe(failedIn) + ')' : '';
          if (global.console) {
            global.console.error('SocketStream: ' + describe(id) + ' failed to load' + where + ':', error);
          }
        }
      });
      return failures;
    }
  };
})(typeof globalThis !== 'undefined' ? globalThis : this);
