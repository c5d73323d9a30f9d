// A local-first todo list: the official electric-sql client on wa-sqlite (the database lives in
// IndexedDB), syncing the `todos` table through an electric-trio service.
//
// URL parameters (all optional):
//   service  the sync service, default ELECTRIC_SERVICE at build time, else http://<host>:5133
//   token    a JWT for the service; without it an unsigned one for `user` (insecure auth mode)
//   user     the user id of that unsigned token (default: one kept in this browser)
//   db       the local database's name (default: one per browser tab, kept across reloads)
import { insecureAuthToken } from 'electric-sql/auth'
import { genUUID, uniqueTabId } from 'electric-sql/util'
import { ElectricDatabase, electrify } from 'electric-sql/wa-sqlite'
// written by `electric-trio generate --target typescript` (see the README)
import { schema, type Electric } from './generated/client'

type Todo = { id: string; title: string; done: boolean; created_at: Date }

type Filter = 'all' | 'open' | 'done'
type State = 'starting' | 'connecting' | 'connected' | 'disconnected' | 'offline' | 'error'

const FILTERS: Record<Filter, { done?: boolean }> = { all: {}, open: { done: false }, done: { done: true } }
const FILTER_KEY = 'todo-web:filter'
const USER_KEY = 'todo-web:user'

const params = new URLSearchParams(location.search)
const serviceUrl =
  params.get('service') ?? import.meta.env.ELECTRIC_SERVICE ?? `http://${location.hostname || 'localhost'}:5133`

function $(id: string): HTMLElement {
  return document.getElementById(id)!
}

const statusEl = $('status')
const errorEl = $('error')
const errorMessage = $('error-message')
const listEl = $('todos') as HTMLUListElement
const filterEl = $('filter') as HTMLSelectElement
const syncEl = $('sync')

function setStatus(state: State, text: string = state): void {
  statusEl.dataset.state = state
  statusEl.textContent = text
  document.body.dataset.state = state
}

function showError(message: string): void {
  setStatus('error', 'error')
  errorMessage.textContent = message
  errorEl.hidden = false
}

function clearError(): void {
  errorEl.hidden = true
  errorMessage.textContent = ''
}

function describe(error: unknown): string {
  if (error && typeof error === 'object') {
    const e = error as { message?: string; code?: unknown; $type?: string }
    if (e.$type === 'Electric.Satellite.SatErrorResp') return 'the service refused the connection'
    if (e.message) return e.message
  }
  return String(error)
}

function token(): string {
  const given = params.get('token')
  if (given) return given
  let user = params.get('user') ?? localStorage.getItem(USER_KEY)
  if (!user) {
    user = genUUID()
    localStorage.setItem(USER_KEY, user)
  }
  return insecureAuthToken({ sub: user })
}

function render(todos: Todo[]): void {
  const items = todos.map((todo) => {
    const li = document.createElement('li')
    li.dataset.id = todo.id
    li.classList.toggle('done', todo.done)
    const toggle = document.createElement('input')
    toggle.type = 'checkbox'
    toggle.className = 'toggle'
    toggle.checked = todo.done
    toggle.addEventListener('change', () => void app.toggle(todo.id, toggle.checked))
    const title = document.createElement('span')
    title.className = 'title'
    title.textContent = todo.title
    const remove = document.createElement('button')
    remove.type = 'button'
    remove.className = 'delete'
    remove.title = 'Delete'
    remove.textContent = '✕'
    remove.addEventListener('click', () => void app.remove(todo.id))
    li.append(toggle, title, remove)
    return li
  })
  listEl.replaceChildren(...items)
  $('count').textContent = `${todos.length} todo${todos.length === 1 ? '' : 's'}`
}

class App {
  electric: Electric | null = null
  filter: Filter = (localStorage.getItem(FILTER_KEY) as Filter | null) ?? 'all'
  rowsAtStart: number | null = null
  private stopLive: (() => void) | null = null

  async start(): Promise<void> {
    filterEl.value = this.filter
    const { tabId } = uniqueTabId()
    const dbName = params.get('db') ?? `todos-${tabId}.db`
    $('db-name').textContent = dbName
    setStatus('starting', 'opening the local database')
    const conn = await ElectricDatabase.init(dbName)
    this.electric = await electrify(conn, schema, {
      url: serviceUrl,
      // a handful of quick attempts, then the error shows (the Retry button tries again)
      connectionBackOffOptions: {
        delayFirstAttempt: false,
        startingDelay: 200,
        timeMultiple: 2,
        maxDelay: 2000,
        numOfAttempts: 5,
        jitter: 'none',
      },
    })
    const electric = this.electric
    const [{ n }] = await electric.db.rawQuery({ sql: 'SELECT count(*) AS n FROM todos' })
    this.rowsAtStart = Number(n)
    this.watch()
    electric.notifier.subscribeToConnectivityStateChanges(({ connectivityState }) => {
      if (connectivityState.status === 'connected') {
        clearError()
        setStatus('connected')
      } else if (!navigator.onLine) {
        setStatus('offline')
      } else if (connectivityState.reason) {
        showError(`disconnected: ${describe(connectivityState.reason)}`)
      } else if (statusEl.dataset.state !== 'error') {
        setStatus('disconnected')
      }
    })
    window.addEventListener('offline', () => {
      setStatus('offline')
      electric.disconnect()
    })
    window.addEventListener('online', () => void this.connect())
    if (navigator.onLine) await this.connect()
    else setStatus('offline')
  }

  // The list shows the local rows of the chosen filter, live: local writes and synced ones.
  watch(): void {
    this.stopLive?.()
    const query = this.electric!.db.todos.liveMany({
      where: FILTERS[this.filter],
      orderBy: [{ created_at: 'asc' }, { id: 'asc' }],
    })
    this.stopLive = query.subscribe((update) => {
      if (update.error) showError(`local query failed: ${describe(update.error)}`)
      else render((update.results ?? []) as Todo[])
    })
  }

  async connect(): Promise<void> {
    const electric = this.electric
    if (electric === null) return
    clearError()
    setStatus('connecting', `connecting to ${serviceUrl}`)
    try {
      await electric.connect(token())
    } catch (error) {
      showError(`cannot sync with ${serviceUrl}: ${describe(error)}`)
      return
    }
    setStatus('connected')
    await this.sync()
  }

  // The filter is the shape's where clause: the service sends only the matching rows (and
  // takes away those that stop matching).
  async sync(): Promise<void> {
    const electric = this.electric
    if (electric === null || !electric.isConnected) return
    syncEl.dataset.state = 'syncing'
    syncEl.textContent = 'syncing…'
    try {
      const where = FILTERS[this.filter]
      const shape = await electric.db.todos.sync({
        where: Object.keys(where).length ? where : undefined,
        key: 'todos',
      })
      await shape.synced
      syncEl.dataset.state = 'synced'
      syncEl.dataset.filter = this.filter
      syncEl.textContent = 'synced'
    } catch (error) {
      syncEl.dataset.state = 'error'
      syncEl.textContent = ''
      showError(`sync failed: ${describe(error)}`)
    }
  }

  async setFilter(filter: Filter): Promise<void> {
    this.filter = filter
    localStorage.setItem(FILTER_KEY, filter)
    this.watch()
    await this.sync()
  }

  async add(title: string): Promise<void> {
    await this.electric!.db.todos.create({
      data: { id: genUUID(), title, done: false, created_at: new Date() },
    })
  }

  async toggle(id: string, done: boolean): Promise<void> {
    await this.electric!.db.todos.update({ where: { id }, data: { done } })
  }

  async remove(id: string): Promise<void> {
    await this.electric!.db.todos.delete({ where: { id } })
  }
}

const app = new App()
declare global {
  interface Window {
    todoApp: App
  }
}
window.todoApp = app

$('new-todo').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('title') as HTMLInputElement
  const title = input.value.trim()
  if (!title) return
  input.value = ''
  app.add(title).catch((error) => showError(`could not add: ${describe(error)}`))
})
filterEl.addEventListener('change', () => void app.setFilter(filterEl.value as Filter))
$('retry').addEventListener('click', () => void app.connect())

app.start().then(
  () => {
    document.body.dataset.ready = 'true'
  },
  (error) => showError(`the app could not start: ${describe(error)}`)
)
