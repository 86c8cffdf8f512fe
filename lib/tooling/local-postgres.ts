/**
 * A throwaway PostgreSQL server on this machine (Debian's `postgresql` package): its own data
 * directory, listening on 127.0.0.1 only, for the tests and benchmarks of the PostgreSQL study
 * store. Users point workers at a server of their own; this is not how one runs a shared store.
 */
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const POSTGRES_LIBS = "/usr/lib/postgresql";

/** The newest installed server's bin folder (initdb, pg_ctl), or undefined when none is installed. */
export function postgresBinDir(): string | undefined {
  if (!existsSync(POSTGRES_LIBS)) return undefined;
  const versions = readdirSync(POSTGRES_LIBS)
    .filter((v) => existsSync(path.join(POSTGRES_LIBS, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? path.join(POSTGRES_LIBS, versions[0], "bin") : undefined;
}

/** A free TCP port on the loopback interface (asked of the kernel, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface LocalPostgres {
  /** postgresql://USER:PASSWORD@127.0.0.1:PORT/DATABASE */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server (fast shutdown) and deletes its data directory. */
  stop(): Promise<void>;
  /** Stops the server but keeps the data (a database that goes down), for `restart`. */
  pause(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * initdb + pg_ctl start in a new temporary folder. The server refuses to run as root, so as root
 * it runs as the `postgres` system user that Debian's package creates.
 */
export async function startLocalPostgres(options: { database?: string; password?: string } = {}): Promise<LocalPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(`No PostgreSQL server under ${POSTGRES_LIBS}: install Debian's postgresql package (scripts/setup.sh does).`);
  const asRoot = process.getuid?.() === 0;
  const root = mkdtempSync(path.join(os.tmpdir(), "fmnist-postgres-"));
  const dataDir = path.join(root, "data");
  const database = options.database ?? "studies";
  const password = options.password ?? "local-test-password";
  const user = "fmnist";
  const port = await freePort();
  // The postgres user's own uid and gid (Debian gives them different numbers).
  const owner = asRoot
    ? { uid: Number((await run("id", ["-u", "postgres"])).stdout.trim()), gid: Number((await run("id", ["-g", "postgres"])).stdout.trim()) }
    : undefined;
  if (owner) chownSync(root, owner.uid, owner.gid);
  const as = (tool: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", path.join(bin, tool), ...args]) : run(path.join(bin, tool), args);
  const passwordFile = path.join(root, "password");
  writeFileSync(passwordFile, password + "\n", { mode: 0o600 });
  if (owner) chownSync(passwordFile, owner.uid, owner.gid);
  await as("initdb", ["-D", dataDir, "-U", user, "--pwfile", passwordFile, "-A", "scram-sha-256", "-E", "UTF8", "--no-instructions"]);
  const start = () => as("pg_ctl", ["-D", dataDir, "-w", "-l", path.join(root, "server.log"), "-o", `-h 127.0.0.1 -p ${port} -k ${root} -c fsync=off`, "start"]);
  const stopServer = () => as("pg_ctl", ["-D", dataDir, "-w", "-m", "fast", "stop"]).catch(() => undefined);
  await start();
  const url = `postgresql://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  await createDatabase(url, database);
  return {
    url: `${url}/${database}`,
    port,
    dataDir,
    async stop() {
      await stopServer();
      rmSync(root, { recursive: true, force: true });
    },
    async pause() {
      await stopServer();
    },
    async restart() {
      await start();
    },
  };
}

/** CREATE DATABASE through the client (createdb would need the password on a terminal). */
async function createDatabase(serverUrl: string, database: string): Promise<void> {
  const { Client } = await import("pg");
  const client = new Client({ connectionString: `${serverUrl}/postgres` });
  await client.connect();
  try {
    const exists = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    // Identifiers cannot be parameters; the name is the caller's constant, quoted here.
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}
