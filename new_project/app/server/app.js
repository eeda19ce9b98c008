// Server actions: SS.server.app.square(25) in the browser, /api/app/square?25 over HTTP.
exports.actions = {
  square(number, cb) {
    // The callback comes after the arguments given: called with none, it is the first.
    if (typeof number !== 'number') {
      throw new SS.Error('Give a number: SS.server.app.square(25), or /api/app/square?25', { code: 'bad_args' });
    }
    cb(number * number);
  },
};
