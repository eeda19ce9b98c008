// Runs in the browser and on the server alike: SS.shared.format.*

// A message as it is sent: trimmed, at most 500 characters; '' when there is none.
exports.message = function (text) {
  return String(text == null ? '' : text).trim().slice(0, 500);
};

// 'HH:MM' of a time in milliseconds, in the local time zone.
exports.clock = function (ms) {
  const at = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  return two(at.getHours()) + ':' + two(at.getMinutes());
};
