// SocketStream templates: SS.tmpl(id, data) renders the <template> that ssbuild
// made from app/views/<folders>/<name>.html (id "folders-name").
//
//   {{name}}, {{user.name}}   the value, HTML-escaped (so data can never add markup or scripts)
//   {{{html}}}                the value as trusted HTML, inserted as it is
//   {{.}}                     the data itself
//
// A missing value (undefined or null) renders as nothing. SS.tmpl returns a
// string of HTML; SS.tmpl.node returns a DocumentFragment ready to insert.
(function (global) {
  'use strict';
  var SS = global.SS || (global.SS = {});
  var ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };
  var TAG = /\{\{\{\s*([\w$.]+)\s*\}\}\}|\{\{\s*([\w$.]+)\s*\}\}/g;

  function escape(value) {
    return String(value).replace(/[&<>"'`]/g, function (c) { return ESCAPES[c]; });
  }

  function lookup(data, path) {
    if (path === '.') return data;
    var value = data;
    var keys = path.split('.');
    for (var i = 0; i < keys.length; i++) {
      if (value === undefined || value === null) return undefined;
      value = value[keys[i]];
    }
    return value;
  }

  function render(template, data) {
    return String(template).replace(TAG, function (_, raw, escaped) {
      var value = lookup(data, raw || escaped);
      if (value === undefined || value === null) return '';
      return raw ? String(value) : escape(value);
    });
  }

  function source(id) {
    var element = global.document && global.document.getElementById(id);
    if (!element) throw new Error("SS.tmpl: no template with id '" + id + "' (templates come from app/views/<folder>/<name>.html)");
    return element.innerHTML;
  }

  function tmpl(id, data) {
    return render(source(id), data === undefined ? {} : data);
  }

  tmpl.render = render;
  tmpl.escape = escape;
  tmpl.node = function (id, data) {
    var holder = global.document.createElement('template');
    holder.innerHTML = tmpl(id, data);
    return holder.content;
  };
  SS.tmpl = tmpl;
})(typeof globalThis !== 'undefined' ? globalThis : this);
