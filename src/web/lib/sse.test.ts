import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SseParser, type SseMessage } from './sse.ts';

const all = (chunks: string[]): { messages: SseMessage[]; parser: SseParser } => {
  const parser = new SseParser();
  const messages = chunks.flatMap((c) => parser.push(c));
  return { messages, parser };
};

const STREAM =
  ': vipdip event stream\n\n' +
  'id: 7\nevent: vm.dip\ndata: {"seq":7}\n\n' +
  'event: health\ndata: {"vm":"web1","state":"down"}\n\n' +
  ': keep-alive\n\n' +
  'id: 9\nevent: service.vip\ndata: {"seq":9}\n\n';

describe('the SSE parser', () => {
  test('reads the messages of the vipdip stream with their event names, data and ids', () => {
    const { messages, parser } = all([STREAM]);
    assert.deepEqual(messages, [
      { event: 'vm.dip', data: '{"seq":7}', lastEventId: '7', hasId: true },
      { event: 'health', data: '{"vm":"web1","state":"down"}', lastEventId: '7', hasId: false },
      { event: 'service.vip', data: '{"seq":9}', lastEventId: '9', hasId: true },
    ]);
    assert.equal(parser.lastEventId, '9');
  });

  test('gives the same messages however the text is cut into chunks, down to one character', () => {
    const whole = all([STREAM]).messages;
    for (const size of [1, 2, 3, 5, 8, 13, 64]) {
      const chunks: string[] = [];
      for (let i = 0; i < STREAM.length; i += size) chunks.push(STREAM.slice(i, i + size));
      assert.deepEqual(all(chunks).messages, whole, `chunks of ${size}`);
    }
  });

  test('a message without an id leaves the last event id where it was (health after an event)', () => {
    const { messages, parser } = all(['id: 41\ndata: a\n\n', 'event: health\ndata: b\n\n']);
    assert.equal(messages[1]!.hasId, false);
    assert.equal(parser.lastEventId, '41');
  });

  test('accepts CRLF and lone CR line ends, also split between chunks', () => {
    const { messages } = all(['id: 1\r\ndata: x\r', '\n\r\n', 'data: y\rdata: z\r\r']);
    assert.deepEqual(
      messages.map((m) => [m.data, m.lastEventId]),
      [
        ['x', '1'],
        ['y\nz', '1'],
      ],
    );
  });

  test('joins data lines with newlines, strips one leading space, and takes a field without colon as empty', () => {
    const { messages } = all(['data:  two spaces\ndata\ndata:none\n\n']);
    assert.equal(messages[0]!.data, ' two spaces\n\nnone');
  });

  test('ignores comments, unknown fields, ids containing NUL, and blocks without data', () => {
    const { messages, parser } = all([': hello\nfoo: bar\n\nid: 3\n\nid: 4\0\ndata: d\n\n']);
    assert.deepEqual(messages, [{ event: 'message', data: 'd', lastEventId: '3', hasId: false }]);
    assert.equal(parser.lastEventId, '3');
  });

  test('drops a leading byte-order mark once, and reads retry as milliseconds', () => {
    const { messages, parser } = all(['\ufeffretry: 1500\ndata: \ufeffkept\n\n']);
    assert.equal(messages[0]!.data, '\ufeffkept');
    assert.equal(parser.retryMs, 1500);
  });

  test('an unfinished message at the end of a stream is not dispatched', () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push('id: 5\ndata: half'), []);
    parser.end();
    assert.deepEqual(parser.push('data: next\n\n'), [
      { event: 'message', data: 'next', lastEventId: '5', hasId: false },
    ]);
  });
});
