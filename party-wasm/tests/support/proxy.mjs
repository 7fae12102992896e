// Test support: a TCP proxy (Node `net`) between a device party and the
// router that cuts a connection in the middle of a session. It reads the
// router's side of each WebSocket connection (HTTP upgrade answer, then
// unmasked server frames), forwards whole frames, and ends the connection
// right after the router's `cutAfterFrames`-th binary frame on it, for the
// first `cuts` connections.
import net from 'node:net';

/**
 * Splits the router's side of a connection into the HTTP upgrade answer and
 * whole server-to-client WebSocket frames (unmasked), so the proxy can
 * forward a chosen number of frames and cut right after them.
 */
class FrameSplitter {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.headerDone = false;
  }

  /** Adds bytes; returns the complete pieces: { bytes, binary }. */
  push(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out = [];
    if (!this.headerDone) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return out;
      this.headerDone = true;
      out.push({ bytes: this.buf.subarray(0, end + 4), binary: false });
      this.buf = this.buf.subarray(end + 4);
    }
    for (;;) {
      if (this.buf.length < 2) return out;
      const opcode = this.buf[0] & 0x0f;
      let len = this.buf[1] & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (this.buf.length < 4) return out;
        len = this.buf.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return out;
        len = Number(this.buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.buf.length < offset + len) return out;
      out.push({ bytes: this.buf.subarray(0, offset + len), binary: opcode === 2 });
      this.buf = this.buf.subarray(offset + len);
    }
  }
}

/**
 * Starts the proxy to `target` (a ws:// or http:// URL of the router).
 * Returns { wsUrl, cutsDone(), connections(), close() }.
 */
export async function startCuttingProxy(target, { cutAfterFrames = 2, cuts = 1 } = {}) {
  const { hostname, port } = new URL(target.replace(/^ws/, 'http'));
  let connections = 0;
  let cutsDone = 0;
  const sockets = new Set();
  const server = net.createServer((client) => {
    connections += 1;
    const cutThis = connections <= cuts;
    const upstream = net.connect({ host: hostname, port: Number(port) });
    sockets.add(client);
    sockets.add(upstream);
    const splitter = new FrameSplitter();
    let binary = 0;
    let cut = false;
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d) => {
      if (!upstream.destroyed) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (cut || client.destroyed) return;
      if (!cutThis) {
        client.write(d);
        return;
      }
      for (const piece of splitter.push(d)) {
        client.write(piece.bytes);
        if (piece.binary) binary += 1;
        if (binary >= cutAfterFrames) {
          // The device joined and got these frames; the connection ends
          // here, in the middle of the session (no close frame: a drop).
          cut = true;
          cutsDone += 1;
          upstream.destroy();
          client.end();
          return;
        }
      }
    });
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', () => {
      upstream.destroy();
      sockets.delete(client);
    });
    upstream.on('close', () => {
      client.destroy();
      sockets.delete(upstream);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxyPort = server.address().port;
  return {
    wsUrl: `ws://127.0.0.1:${proxyPort}/ws`,
    cutsDone: () => cutsDone,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A ws:// URL on a local port where nothing listens. */
export async function closedPortUrl() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `ws://127.0.0.1:${port}/ws`;
}
