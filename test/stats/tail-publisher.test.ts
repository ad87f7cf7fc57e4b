import type * as zmq from 'zeromq';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/core/wait.js';
import { LogLines, decode, tailTopic } from '../../src/protocol/index.js';
import { TailPublisher } from '../../src/stats/tail-publisher.js';
import { SocketFactory, closeQuietly } from '../../src/transport/index.js';

const factory = new SocketFactory({ maxMessageBytes: 1 << 20 });
const sockets: zmq.Socket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) closeQuietly(socket);
});

interface Received {
  topic: string;
  message: LogLines;
}

/** A PUB with a TailPublisher and a SUB on `topics` (plus `log.probe`), subscribed for real before it returns. */
async function setUp(topics: string[]): Promise<{ publisher: TailPublisher; received: Received[]; pub: zmq.Publisher }> {
  const pub = factory.publisher('server');
  sockets.push(pub);
  await pub.bind('tcp://127.0.0.1:*');
  const sub = factory.subscriber('client');
  sockets.push(sub);
  for (const topic of [...topics, 'log.probe']) sub.subscribe(topic);
  sub.connect(pub.lastEndpoint!);
  const received: Received[] = [];
  void (async () => {
    try {
      for await (const [topic, payload] of sub) received.push({ topic: topic!.toString(), message: decode(payload!, LogLines) });
    } catch {
      // closed by afterEach
    }
  })();
  const publisher = new TailPublisher(pub);
  // A SUB's subscription reaches the PUB some time after connect: publish probes until one arrives.
  await waitFor(() => {
    publisher.publish('probe', ['probe']);
    return received.length > 0;
  }, { timeoutMs: 3000, intervalMs: 20, name: 'subscription' });
  await publisher.drained();
  return { publisher, received, pub };
}

describe('TailPublisher', () => {
  it('publishes [topic, encoded LogLines] to a subscriber of log.<app>', async () => {
    const { publisher, received } = await setUp(['log.web']);
    publisher.publish('web', ['2026-01-01T00:00:00.000Z app[web.1]: hello', 'second']);
    await publisher.drained();
    const first = await waitFor(() => received.find((r) => r.topic === 'log.web'), { timeoutMs: 3000, name: 'log.web message' });
    expect(first).toEqual({ topic: 'log.web', message: { v: 1, type: 'log.lines', app: 'web', lines: ['2026-01-01T00:00:00.000Z app[web.1]: hello', 'second'] } });
    expect(tailTopic('web')).toBe('log.web');
  });

  it('keeps the order of batches and counts published lines', async () => {
    const { publisher, received } = await setUp(['log.web']);
    const before = publisher.stats.published;
    for (let i = 0; i < 50; i++) publisher.publish('web', [`line ${i}`, `more ${i}`]);
    await publisher.drained();
    const web = await waitFor(() => {
      const got = received.filter((r) => r.topic === 'log.web');
      return got.length === 50 ? got : undefined;
    }, { timeoutMs: 3000, name: '50 batches' });
    expect(web.map((r) => r.message.lines[0])).toEqual(Array.from({ length: 50 }, (_, i) => `line ${i}`));
    expect(publisher.stats.published - before).toBe(100);
    expect(publisher.stats.dropped).toBe(0);
  });

  it('delivers only the subscribed app (compared on the exact topic frame)', async () => {
    const { publisher, received } = await setUp(['log.web']);
    publisher.publish('api', ['not for us']);
    publisher.publish('web-2', ['prefix match only']);
    publisher.publish('web', ['for us']);
    await publisher.drained();
    // Batches go out in order, so once log.web arrived the two before it have been delivered or filtered.
    await waitFor(() => received.some((r) => r.topic === 'log.web'), { timeoutMs: 3000, name: 'log.web message' });
    const topics = new Set(received.map((r) => r.topic));
    expect(topics.has('log.api')).toBe(false);
    // SUB filters by prefix: log.web-2 arrives too, so a receiver must compare the topic frame exactly.
    expect(topics.has('log.web-2')).toBe(true);
    expect(received.filter((r) => r.topic === 'log.web').map((r) => r.message.lines)).toEqual([['for us']]);
  });

  it('ignores lines once the socket is closed', async () => {
    const { publisher, pub } = await setUp([]);
    await publisher.drained();
    const before = { ...publisher.stats };
    pub.close();
    expect(() => publisher.publish('web', ['after close'])).not.toThrow();
    await publisher.drained();
    expect(publisher.stats).toEqual(before);
  });
});
