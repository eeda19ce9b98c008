// Server actions: SS.server.app.square(25) in the browser, /api/app/square?25 over HTTP.
exports.actions = {
  square(number, cb) {
    cb(number * number);
  },
};
