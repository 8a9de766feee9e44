--- Headless Neovim 0.11 driving the livekv plugin (editors/nvim) against the real server.
---
--- Keys go in through `nvim_input`, so Neovim's main loop handles them as typed: insert mode,
--- TextChangedI/CursorMovedI, the plugin's debounce timer and its expression mappings all run
--- as they do for a user. The script itself runs as a coroutine that yields while Neovim works
--- and is resumed by a polling timer. It records the plugin's ghost-text extmarks, every
--- `textDocument/inlineCompletion` request the plugin sends with the server's answer (by wrapping
--- the client's `request`), the buffer around each step, the status line and `:checkhealth
--- livekv`, and writes them to a JSON report for tests/test_nvim_plugin.py; errors are recorded
--- there, never raised.
---
--- Usage: LIVEKV_E2E_CONFIG=CONFIG.json nvim --clean -n --headless --cmd 'set rtp^=editors/nvim' -S THIS
--- CONFIG: { file, out, cmd, settings, debounce_ms, after_line, typed, second_after, second_typed, third_after, third_typed, dismiss_keys, load_timeout_ms, wait_ms, total_timeout_ms }

local config = vim.json.decode(table.concat(vim.fn.readfile(assert(os.getenv('LIVEKV_E2E_CONFIG'))), '\n'))

local report = {
  nvim = tostring(vim.version()),
  builtin = vim.lsp.inline_completion ~= nil,
  requests = {}, ---@type table[] { params, result, tick } per inlineCompletion request the plugin sent
  errors = {}, ---@type string[]
}

local livekv ---@type table the plugin's module
local bufnr ---@type integer
local client ---@type vim.lsp.Client
local finished = false

local function finish()
  if finished then
    return
  end
  finished = true
  if client then
    local id = client.id
    client:stop() -- shutdown, then exit; the client is forgotten once the server has exited
    report.server_exited = vim.wait(10000, function()
      return vim.lsp.get_client_by_id(id) == nil
    end, 20)
    report.status_stopped = livekv.status()
  end
  vim.fn.writefile({ vim.json.encode(report) }, config.out)
  vim.cmd('qa!')
end

--- Yield until `cond()` is true (polled every 20 ms) or `timeout_ms` passed; returns whether it held.
---@param timeout_ms integer
---@param cond fun(): any
---@return boolean
local function wait_until(timeout_ms, cond)
  local co = assert(coroutine.running())
  local started = vim.uv.now()
  local timer = assert(vim.uv.new_timer())
  timer:start(
    20,
    20,
    vim.schedule_wrap(function()
      if timer:is_closing() then
        return
      end
      local ok = cond()
      if ok or vim.uv.now() - started > timeout_ms then
        timer:close()
        coroutine.resume(co, ok and true or false)
      end
    end)
  )
  return coroutine.yield()
end

---@param ms integer
local function sleep(ms)
  wait_until(ms, function()
    return false
  end)
end

--- Keys that type `text`: `nvim_input` notation, "<" spelled "<lt>" and a line break "<CR>".
---@param text string
local function literal(text)
  return (text:gsub('<', '<lt>'):gsub('\n', '<CR>'))
end

local sent = 0

--- Type `keys` and wait until Neovim has handled them (a <Cmd> marker after them has run).
---@param keys string `nvim_input` notation
local function press(keys)
  sent = sent + 1
  vim.api.nvim_input(keys .. ('<Cmd>lua _G.livekv_e2e_keys = %d<CR>'):format(sent))
  assert(wait_until(config.wait_ms, function()
    return _G.livekv_e2e_keys == sent
  end), 'keys not handled: ' .. keys)
end

--- The plugin's ghost text: { row, col, text } with text = inline chunks, then "\n" and each
--- virtual line; nil when none is shown. `count` is the number of extmarks in its namespace.
---@return table?
local function ghost()
  local ns = vim.api.nvim_get_namespaces().livekv
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local row, col, details = marks[1][2], marks[1][3], marks[1][4]
  local parts = {}
  for _, chunk in ipairs(details.virt_text or {}) do
    parts[#parts + 1] = chunk[1]
  end
  local text = table.concat(parts)
  for _, line in ipairs(details.virt_lines or {}) do
    local chunks = {}
    for _, chunk in ipairs(line) do
      chunks[#chunks + 1] = chunk[1]
    end
    text = text .. '\n' .. table.concat(chunks)
  end
  return { row = row, col = col, text = text, pos = details.virt_text_pos or vim.NIL, count = #marks }
end

--- The buffer, cursor, mode, ghost text, request count and status line right now, under `name`.
local function snapshot(name)
  local cursor = vim.api.nvim_win_get_cursor(0)
  local shot = {
    lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true),
    cursor = { cursor[1] - 1, cursor[2] },
    mode = vim.api.nvim_get_mode().mode,
    ghost = ghost() or vim.NIL,
    requests = #report.requests,
    statusline = livekv.statusline(),
  }
  report[name] = shot
  return shot
end

local function all_answered()
  for _, r in ipairs(report.requests) do
    if not r.done and not r.cancelled then
      return false
    end
  end
  return true
end

--- Record every inlineCompletion request the plugin sends, with the server's answer.
local function spy_on_requests()
  local request = client.request
  client.request = function(self, method, params, handler, buf)
    if method ~= 'textDocument/inlineCompletion' then
      return request(self, method, params, handler, buf)
    end
    local entry = { params = vim.deepcopy(params), tick = vim.b[bufnr].changedtick, done = false }
    table.insert(report.requests, entry)
    local ok, id = request(self, method, params, function(err, result, ctx)
      entry.done, entry.result, entry.err = true, result or vim.NIL, err or vim.NIL
      return handler(err, result, ctx)
    end, buf)
    entry.id = id
    return ok, id
  end
  local cancel = client.cancel_request
  client.cancel_request = function(self, id)
    for _, entry in ipairs(report.requests) do
      if entry.id == id then
        entry.cancelled = true
      end
    end
    return cancel(self, id)
  end
end

--- Row (0-based) of the first line equal to `text`.
local function row_of(text)
  local row = vim.fn.index(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), text)
  assert(row >= 0, ('no line %q'):format(text))
  return row
end

--- Wait for the ghost text after typing (every request answered, so it shows the last answer).
local function wait_for_ghost(what)
  local ok = wait_until(config.wait_ms, function()
    return ghost() ~= nil and all_answered()
  end)
  assert(ok, 'no ghost text ' .. what)
end

local function main()
  livekv = require('livekv')
  livekv.setup({ cmd = config.cmd, settings = config.settings, debounce_ms = config.debounce_ms })
  vim.cmd.edit(vim.fn.fnameescape(config.file))
  bufnr = vim.api.nvim_get_current_buf()
  vim.cmd('setlocal indentexpr= noautoindent nosmartindent textwidth=0') -- keys land exactly as typed

  assert(
    wait_until(config.load_timeout_ms, function()
      local id = livekv.client_id()
      return id and vim.lsp.get_client_by_id(id).initialized
    end),
    'the livekv client did not start or initialize'
  )
  client = assert(vim.lsp.get_client_by_id(livekv.client_id()))
  report.attached = vim.lsp.buf_is_attached(bufnr, client.id)
  report.init_options = client.config.init_options
  report.root_dir = client.root_dir
  report.file = config.file
  report.statusline_starting = livekv.statusline()
  spy_on_requests()
  -- The worker answers in order, so this returns once the model is loaded and the file opened.
  local state = client:request_sync('livekv/documentState', { uri = vim.uri_from_bufnr(bufnr) }, config.load_timeout_ms, bufnr)
  assert(state and not state.err, 'livekv/documentState failed: ' .. vim.inspect(state))
  assert(wait_until(5000, function()
    return livekv.status().state == 'ready'
  end), 'the status did not become ready after loading: ' .. vim.inspect(livekv.status()))
  report.status_loaded = livekv.status()

  -- 1. Type a partial line; the plugin asks after its debounce and shows the first item.
  vim.api.nvim_win_set_cursor(0, { row_of(config.after_line) + 1, 0 })
  vim.api.nvim_input('o' .. literal(config.typed))
  wait_for_ghost('after typing')
  local shown = snapshot('shown')
  report.status_shown = livekv.status()

  -- 2. Type the suggestion's first character: the ghost text shrinks, nothing is asked.
  local first = vim.fn.strcharpart(shown.ghost.text, 0, 1)
  report.typed_through = first
  vim.api.nvim_input(literal(first))
  wait_until(config.wait_ms, function()
    local g = ghost()
    return vim.api.nvim_get_current_line() == shown.lines[shown.cursor[1] + 1] .. first and g and g.text ~= shown.ghost.text
  end)
  sleep(config.debounce_ms + 400) -- long enough for a request the plugin should not send
  snapshot('through')

  -- 3. Next draft, then back to the previous one.
  press('<M-]>')
  snapshot('next')
  press('<M-[>')
  snapshot('prev')

  -- 4. Accept all of it.
  snapshot('before_accept')
  press('<Tab>')
  snapshot('accepted')

  -- 5. A new line; <M-]> twice at once asks twice (nothing shown yet), so the second request
  -- cancels the first; the ghost text comes from the last one; a word of it is accepted, then the
  -- rest is dismissed.
  vim.api.nvim_input('<Esc>')
  assert(wait_until(5000, function()
    return vim.api.nvim_get_mode().mode == 'n'
  end), 'insert mode did not end')
  vim.api.nvim_win_set_cursor(0, { row_of(config.second_after) + 1, 0 })
  snapshot('before_second')
  vim.api.nvim_input('o' .. literal(config.second_typed) .. '<M-]><M-]>')
  wait_for_ghost('on the second line')
  snapshot('second_shown')
  -- Its first word only: the rest stays shown, nothing is asked.
  press('<C-Right>')
  sleep(config.debounce_ms + 400) -- long enough for a request the plugin should not send
  snapshot('word')
  press(config.dismiss_keys)
  sleep(config.debounce_ms + 400)
  snapshot('dismissed')
  vim.api.nvim_input('<Esc>')
  sleep(100)

  -- 6. Multi-line suggestions (the server's `multiline` setting, changed while it runs): the
  -- first line inline, the others as virtual lines; <Tab> inserts them all.
  livekv.configure({ multiline = true })
  vim.api.nvim_win_set_cursor(0, { row_of(config.third_after) + 1, 0 })
  vim.api.nvim_input('o' .. literal(config.third_typed))
  wait_for_ghost('for a multi-line suggestion')
  snapshot('multi_shown')
  press('<Tab>')
  snapshot('multi_accepted')
  vim.api.nvim_input('<Esc>')
  sleep(100)

  -- 7. :checkhealth livekv (opens its report in a new tab).
  vim.cmd('checkhealth livekv')
  report.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  report.commands = vim.api.nvim_get_commands({})['LivekvToggle'] ~= nil
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.defer_fn(function()
      table.insert(report.errors, 'the driver timed out')
      finish()
    end, config.total_timeout_ms)
    -- Scheduled, not run inside VimEnter: autocommands (FileType for the plugin) do not nest.
    vim.schedule(coroutine.wrap(function()
      local ok, err = xpcall(main, debug.traceback)
      if not ok then
        table.insert(report.errors, err)
      end
      report.status_end = livekv and livekv.status() or vim.NIL
      finish()
    end))
  end,
})
