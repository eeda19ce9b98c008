// The browser side. This module runs as soon as the page's script loads;
// init() runs once the WebSocket session is ready (after each page load).
exports.init = async function () {
  const list = document.getElementById('messages');
  const form = document.getElementById('say');
  const status = document.getElementById('status');

  // Events the server publishes (app/server/chat.js) arrive here.
  SS.events.on('chat:message', (message) => {
    list.insertAdjacentHTML('beforeend', SS.tmpl('chat-message', {
      text: message.text,
      time: SS.shared.format.clock(message.at),
    }));
    list.lastElementChild.scrollIntoView({ block: 'end' });
  });
  SS.socket.on('disconnect', () => { status.textContent = 'Offline: reconnecting...'; });
  SS.socket.on('reconnect', () => { status.textContent = 'Connected.'; });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = form.elements.text;
    try {
      await SS.server.chat.send(input.value);
      input.value = '';
    } catch (error) {
      status.textContent = error.message;
    }
  });

  form.elements.text.disabled = false;
  form.elements.text.focus();

  // A call with a result: also at /api/app/square?25 over HTTP.
  try {
    status.textContent = 'Connected. The server says 25 squared is ' + (await SS.server.app.square(25)) + '.';
  } catch (error) {
    status.textContent = 'Connected, but app.square failed: ' + error.message;
  }
};
