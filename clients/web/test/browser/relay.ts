/**
 * What the browser tests run against: the real relay binary (built by cargo from this
 * repository) on 127.0.0.1 with the demo page, and Debian's Chromium driven by
 * playwright-core, trusting the relay's development certificate for this run only.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { chromium, type BrowserContext } from "playwright-core";

/** The repository root (the tests run from `clients/web`). */
const ROOT = resolve(process.cwd(), "../..");

/** A running relay: its `https://host:port` origin, stopped by `stop()`. */
export interface Relay {
  origin: string;
  stop(): Promise<void>;
}

/**
 * Builds (if needed) and starts `tickrelay --demo` on a free loopback port, with its
 * development certificate in a fresh directory and `config` (TOML) as its
 * configuration file; resolves once it listens.
 */
export async function startRelay(config = "", env: Record<string, string> = {}): Promise<Relay> {
  const binary = process.env.TICKRELAY_BIN ?? join(ROOT, "target/debug/tickrelay");
  if (process.env.TICKRELAY_BIN === undefined) {
    const build = spawnSync("cargo", ["build", "--quiet", "--bin", "tickrelay"], { cwd: ROOT, stdio: "inherit" });
    if (build.status !== 0) throw new Error("cargo build --bin tickrelay failed");
  }
  const dir = mkdtempSync(join(tmpdir(), "tickrelay-browser-"));
  writeFileSync(join(dir, "relay.toml"), config);
  const args = ["--config", join(dir, "relay.toml"), "--listen", "127.0.0.1:0", "--no-quic", "--demo"];
  const child: ChildProcess = spawn(binary, [...args, "--dev-cert-path", join(dir, "cert.pem")], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...withoutRelaySettings(process.env), ...env },
  });
  const origin = await new Promise<string>((resolveOrigin, reject) => {
    const timer = setTimeout(() => reject(new Error("the relay did not listen within 20 s")), 20_000);
    child.once("exit", (code) => reject(new Error(`the relay exited with ${code}`)));
    createInterface({ input: child.stderr! }).on("line", (line) => {
      const match = /listening on (wss|ws):\/\/([^/\s]+)\/ws/.exec(line);
      if (match !== null) {
        clearTimeout(timer);
        resolveOrigin(`${match[1] === "wss" ? "https" : "http"}://${match[2]}`);
      }
    });
  });
  return {
    origin,
    stop: async () => {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The environment without the relay's own variables (`TICKRELAY_*`), which would override the test's settings. */
function withoutRelaySettings(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((e): e is [string, string] => !e[0].startsWith("TICKRELAY_") && e[1] !== undefined),
  );
}

/** A TCP proxy on 127.0.0.1 to `target`, whose connections the test can cut as a network failure would. */
export interface Proxy {
  port: number;
  /** Resets every connection through the proxy (both sides see a TCP reset, no close frame). */
  cut(): void;
  close(): Promise<void>;
}

export async function startProxy(target: URL): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  };
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    track(client);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => {
      for (const socket of sockets) socket.resetAndDestroy();
    },
    // `server.close` waits for every connection to end: end them.
    close: () =>
      new Promise((r) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * Headless Chromium as root on a CI machine, with a fresh profile (playwright takes
 * the profile directory itself instead of a `--user-data-dir` flag).
 */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "tickrelay-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--ignore-certificate-errors",
    ],
    // The relay's development certificate is self-signed and made for this run.
    ignoreHTTPSErrors: true,
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
