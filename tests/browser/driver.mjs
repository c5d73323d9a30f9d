// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core for
// tests/integration/test_browser*.py, plus a static file server for the built web app.
//
// Protocol: one JSON object per line.
//   stdin   {"id": 1, "cmd": "page", "name": "a", ...params}
//   stdout  {"event": "ready"} once, then {"id": 1, "result": ...} or {"id": 1, "error": "..."}
// Every command is bounded by its `timeout_ms` (default 15 s). EOF on stdin closes the browser
// and the server, then exits. The browser profile is a fresh directory under $TMPDIR (Playwright
// makes one per launch); each named page has its own browser context (storage, offline switch).

import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { chromium } from 'playwright-core'

const DEFAULT_TIMEOUT_MS = 15_000
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
}

let browser = null
let server = null
const pages = new Map() // name -> {context, page, console: string[]}

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

// --- static files ------------------------------------------------------------------------------

function serveStatic(root) {
  return new Promise((resolve, reject) => {
    const s = createServer(async (req, res) => {
      const url = new URL(req.url, 'http://x')
      let file = path.normalize(path.join(root, decodeURIComponent(url.pathname)))
      if (!file.startsWith(root)) {
        res.writeHead(403).end()
        return
      }
      try {
        if ((await stat(file)).isDirectory()) file = path.join(file, 'index.html')
        await stat(file)
      } catch {
        file = path.join(root, 'index.html') // a single-page app: unknown paths get the page
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'cache-control': 'no-store',
      })
      createReadStream(file).pipe(res)
    })
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => resolve(s))
  })
}

// --- commands ----------------------------------------------------------------------------------

function entry(name) {
  const e = pages.get(name)
  if (!e) throw new Error(`no page named ${name}`)
  return e
}

const commands = {
  // {dist}: serve the built app and launch the browser; returns {url}
  async start({ dist }) {
    server = await serveStatic(path.resolve(dist))
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    })
    return { url: `http://127.0.0.1:${server.address().port}/`, version: browser.version() }
  },

  // {name}: a new browser context with one page
  async page({ name }) {
    if (pages.has(name)) throw new Error(`page ${name} exists`)
    const context = await browser.newContext({ viewport: { width: 800, height: 640 } })
    const page = await context.newPage()
    const e = { context, page, console: [] }
    page.on('console', (m) => e.console.push(`${m.type()}: ${m.text()}`))
    page.on('pageerror', (err) => e.console.push(`pageerror: ${err.message}`))
    pages.set(name, e)
    return {}
  },

  async goto({ name, url }) {
    await entry(name).page.goto(url)
    return {}
  },

  async reload({ name }) {
    await entry(name).page.reload()
    return {}
  },

  async fill({ name, selector, value }) {
    await entry(name).page.fill(selector, value)
    return {}
  },

  async press({ name, selector, key }) {
    await entry(name).page.press(selector, key)
    return {}
  },

  async click({ name, selector }) {
    await entry(name).page.click(selector)
    return {}
  },

  async select({ name, selector, value }) {
    await entry(name).page.selectOption(selector, value)
    return {}
  },

  // {name, expr}: the value of a JS expression in the page
  async eval({ name, expr }) {
    return await entry(name).page.evaluate(expr)
  },

  // {name, expr}: waits until the expression is truthy in the page; returns its value
  async wait({ name, expr, timeout_ms }) {
    const handle = await entry(name).page.waitForFunction(expr, null, {
      timeout: timeout_ms ?? DEFAULT_TIMEOUT_MS,
      polling: 50,
    })
    return await handle.jsonValue()
  },

  async offline({ name, offline }) {
    await entry(name).context.setOffline(Boolean(offline))
    return {}
  },

  async screenshot({ name, path: file }) {
    await entry(name).page.screenshot({ path: file, fullPage: true })
    return { path: file }
  },

  async console({ name }) {
    return entry(name).console
  },

  async close_page({ name }) {
    const e = entry(name)
    pages.delete(name)
    await e.context.close()
    return {}
  },
}

function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function shutdown() {
  try {
    if (browser) await withTimeout(browser.close(), 5000, 'closing the browser')
  } catch {}
  server?.close()
  process.exit(0)
}

const lines = createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  if (!line.trim()) return
  let request
  try {
    request = JSON.parse(line)
  } catch {
    return
  }
  const { id, cmd, timeout_ms, ...params } = request
  const handler = commands[cmd]
  if (!handler) {
    send({ id, error: `unknown command ${cmd}` })
    return
  }
  try {
    // `wait` bounds itself; the margin lets its own message win
    const bound = (timeout_ms ?? DEFAULT_TIMEOUT_MS) + (cmd === 'wait' ? 2000 : 0)
    const result = await withTimeout(handler({ ...params, timeout_ms }), bound, cmd)
    send({ id, result: result ?? null })
  } catch (err) {
    send({ id, error: `${cmd}: ${err?.message ?? String(err)}` })
  }
})
lines.on('close', shutdown)
send({ event: 'ready' })
