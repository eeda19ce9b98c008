// SS.server.chat.send(text): checks the message and publishes it to every browser.
exports.actions = {
  send(text) {
    // Called with no argument, `text` would be the callback every action gets last.
    const message = typeof text === 'string' ? SS.shared.format.message(text) : '';
    // An SS.Error's message reaches the browser as it is, in production too.
    if (!message) throw new SS.Error('Type a message first.');
    SS.publish.broadcast('chat:message', { text: message, at: Date.now() });
    console.log('message of', message.length, 'characters');
    return true;
  },
};
