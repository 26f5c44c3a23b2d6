// Renders <state>/openclaw.json from openclaw.template.json5 and the container's environment.
//
//   node render-config.mjs            render (what entrypoint.sh does before starting the gateway)
//   node render-config.mjs --print    print the merged config to stdout, write nothing
//
// Environment (defaults in brackets):
//   OPENCLAW_STATE_DIR     [/data/state]  where openclaw.json lives
//   OPENCLAW_CONFIG_PATH   [<state>/openclaw.json]  OpenClaw's own override, honoured here too
//   MOLT_CONFIG_TEMPLATE   [openclaw.template.json5 beside this script]
//   MOLT_LOG_DIR           [/data/logs]   logging.file becomes <dir>/openclaw.log
//   MOLT_HEARTBEAT         [0m]           agents.defaults.heartbeat.every ("0m" = off)
//   MOLT_MODEL_BASE_URL    [unset]        models.providers.molt.baseUrl; when unset the molt
//                                         provider and the default model are left alone
//   MOLT_DREAMING          [unset]        on|off: memory-core's background "dreaming" job
//                                         (it runs agent turns while idle); unset = untouched
//   OPENCLAW_PACKAGE_DIR   [/usr/local/lib/node_modules/openclaw]  where json5 is loaded from
//
// Merge rules: "managed" keys from the template overwrite, "defaults" keys fill gaps, every
// other key already in the file is kept. Objects merge key by key; arrays and scalars are
// replaced whole. A file that cannot be parsed is kept as a timestamped backup beside it and
// a fresh one is written. Writes go to a temporary file that is renamed over the target.
//
// Exit codes: 0 written or unchanged, 78 (EX_CONFIG) bad input, 73 (EX_CANTCREAT) not writable.

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const EX_CONFIG = 78;
const EX_CANTCREAT = 73;

class RenderError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

function loadJson5() {
  const packageDir = process.env.OPENCLAW_PACKAGE_DIR || "/usr/local/lib/node_modules/openclaw";
  try {
    return createRequire(path.join(packageDir, "package.json"))("json5");
  } catch {
    // OpenClaw depends on json5, so this only happens outside the image; fall back to JSON.
    return { parse: JSON.parse };
  }
}

const JSON5 = loadJson5();

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function stamp() {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

function variables(env) {
  const heartbeat = (env.MOLT_HEARTBEAT || "0m").trim();
  if (!/^[0-9]+(ms|s|m|h|d)$/.test(heartbeat)) {
    throw new RenderError(
      `MOLT_HEARTBEAT=${JSON.stringify(heartbeat)} is not a duration such as 0m, 30m or 1h`,
      EX_CONFIG,
    );
  }
  const baseUrl = (env.MOLT_MODEL_BASE_URL || "").trim();
  if (baseUrl && !/^https?:\/\/[^\s/]+/.test(baseUrl)) {
    throw new RenderError(
      `MOLT_MODEL_BASE_URL=${JSON.stringify(baseUrl)} is not an http(s) URL`,
      EX_CONFIG,
    );
  }
  const logDir = env.MOLT_LOG_DIR || "/data/logs";
  const dreamingText = (env.MOLT_DREAMING || "").trim().toLowerCase();
  const dreaming = { on: true, true: true, 1: true, off: false, false: false, 0: false }[dreamingText];
  if (dreamingText && dreaming === undefined) {
    throw new RenderError(`MOLT_DREAMING=${JSON.stringify(env.MOLT_DREAMING)} is not on or off`, EX_CONFIG);
  }
  return {
    MOLT_DREAMING: dreaming,
    MOLT_HEARTBEAT: heartbeat,
    // Anthropic's SDK appends /v1/messages itself; a trailing /v1 would double it.
    MOLT_MODEL_BASE_URL: baseUrl.replace(/\/+$/, "").replace(/\/v1$/, ""),
    MOLT_LOG_FILE: path.join(logDir, "openclaw.log"),
  };
}

// A key whose placeholder has no value (its variable is unset) is left out entirely, so the
// existing file's value (or OpenClaw's default) stays in force.
function fill(value, vars) {
  if (typeof value === "string") {
    const match = /^\{\{([A-Z0-9_]+)\}\}$/.exec(value);
    if (!match) return value;
    if (!(match[1] in vars)) throw new RenderError(`template names unknown {{${match[1]}}}`, EX_CONFIG);
    return vars[match[1]];
  }
  if (Array.isArray(value)) return value.map((item) => fill(item, vars));
  if (isObject(value)) {
    const out = {};
    for (const [key, child] of Object.entries(value)) {
      const filled = fill(child, vars);
      if (filled !== undefined) out[key] = filled;
    }
    return out;
  }
  return value;
}

// Drop objects left empty (e.g. providers: {} once the molt provider is skipped).
function pruneEmpty(value) {
  if (!isObject(value)) return value;
  const out = {};
  for (const [key, child] of Object.entries(value)) {
    const pruned = pruneEmpty(child);
    if (isObject(pruned) && Object.keys(pruned).length === 0) continue;
    out[key] = pruned;
  }
  return out;
}

// `over` wins on every leaf it sets; objects are merged recursively.
function overlay(base, over) {
  if (!isObject(base) || !isObject(over)) return structuredClone(over);
  const out = { ...base };
  for (const [key, value] of Object.entries(over)) {
    out[key] = key in base ? overlay(base[key], value) : structuredClone(value);
  }
  return out;
}

// `base` wins on every leaf it already has; `fallback` only fills gaps.
function underlay(base, fallback) {
  if (!isObject(base) || !isObject(fallback)) return base;
  const out = { ...base };
  for (const [key, value] of Object.entries(fallback)) {
    out[key] = key in base ? underlay(base[key], value) : structuredClone(value);
  }
  return out;
}

function readTemplate(file, vars) {
  let parsed;
  try {
    parsed = JSON5.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new RenderError(`cannot read template ${file}: ${err.message}`, EX_CONFIG);
  }
  const managed = fill(parsed.managed ?? {}, vars);
  const defaults = fill(parsed.defaults ?? {}, vars);
  if (!vars.MOLT_MODEL_BASE_URL) {
    // No model gateway configured (yet): leave the provider and the default model as they are.
    delete managed.models?.providers?.molt;
    delete managed.agents?.defaults?.model;
  }
  return { managed: pruneEmpty(managed), defaults: pruneEmpty(defaults) };
}

function writeAtomic(file, text) {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  try {
    const dirFd = fs.openSync(dir, "r");
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
  } catch {
    // Directory fsync is best effort.
  }
}

function keepBackup(file, text, why) {
  const backup = `${file}.${why}-${stamp()}.bak`;
  writeAtomic(backup, text);
  return backup;
}

export function render(env = process.env, { write = true, log = console.error } = {}) {
  const stateDir = env.OPENCLAW_STATE_DIR || "/data/state";
  const configPath = env.OPENCLAW_CONFIG_PATH || path.join(stateDir, "openclaw.json");
  const here = path.dirname(fileURLToPath(import.meta.url));
  const templatePath = env.MOLT_CONFIG_TEMPLATE || path.join(here, "openclaw.template.json5");
  const { managed, defaults } = readTemplate(templatePath, variables(env));

  let existing = {};
  let original = null;
  try {
    original = fs.readFileSync(configPath, "utf8");
  } catch (err) {
    if (err.code !== "ENOENT") {
      throw new RenderError(`cannot read ${configPath}: ${err.message}`, EX_CANTCREAT);
    }
  }
  let backupReason = null;
  if (original !== null && original.trim() !== "") {
    let parsed;
    try {
      parsed = JSON5.parse(original);
    } catch (err) {
      backupReason = "unparseable";
      log(`render-config: ${configPath} cannot be parsed (${err.message}); starting from a fresh file`);
    }
    if (parsed !== undefined && !isObject(parsed)) {
      backupReason = "unparseable";
      log(`render-config: ${configPath} does not hold an object; starting from a fresh file`);
    } else if (parsed !== undefined) {
      existing = parsed;
      try {
        JSON.parse(original);
      } catch {
        // JSON5 comments and formatting do not survive a rewrite: keep the original text.
        backupReason = "json5";
      }
    }
  }

  const merged = overlay(underlay(existing, defaults), managed);
  const text = `${JSON.stringify(merged, null, 2)}\n`;
  if (!write) return { configPath, text, changed: text !== original };
  if (text === original) return { configPath, text, changed: false };

  try {
    fs.mkdirSync(path.dirname(configPath), { recursive: true });
    if (backupReason) {
      const backup = keepBackup(configPath, original, backupReason);
      log(`render-config: kept the previous file as ${backup}`);
    }
    writeAtomic(configPath, text);
  } catch (err) {
    throw new RenderError(
      `cannot write ${configPath}: ${err.message} (the state directory must be writable by uid ${process.getuid?.()})`,
      EX_CANTCREAT,
    );
  }
  return { configPath, text, changed: true };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const print = process.argv.includes("--print");
    const result = render(process.env, { write: !print });
    if (print) process.stdout.write(result.text);
  } catch (err) {
    console.error(`render-config: ${err.message}`);
    process.exit(err instanceof RenderError ? err.code : 1);
  }
}
